//! Live runs: what an instance's watchers of a run are pushed (`GET …/runs/{run_id}/events`).
//!
//! Every run watched on this instance is read by one tail task, whatever the number of runs and of
//! their watchers: every `LIVE_POLL_MS`, one query reads the state of every watched run and its
//! step attempts (`runs/by_ids_with_steps.sql`, per run the answers of `GET …/runs/{run_id}` and
//! `…/steps`), only partitions since the oldest watched run was created. While nothing is watched
//! the task is gone: an idle instance sends no query. Each watcher holds a `watch` receiver of the
//! latest snapshot, so a slow reader skips to the newest state instead of buffering. A run leaves
//! the tail with its end (its last snapshot stays for the watchers, and in the ended cache) or when
//! its last watcher has gone. Streams are capped per org and per instance ([`LiveError::TooMany`],
//! answered 503 with Retry-After).
//!
//! Polled runs are read the same way, and consistently: `GET …/runs/{run_id}` and `…/steps`
//! ([`LiveRuns::look`]) answer what a read that started after the request arrived found, so a
//! client that was told a state by any instance is never told an older one afterwards, by any
//! instance (a run read SUCCEEDED behind a load balancer never reads RUNNING again). A look is
//! answered by the tail's next poll, which a waiting look brings forward (at most one poll in
//! flight, at least [`LOOK_POLL_GAP`]'s share of `LIVE_POLL_MS` between polls): every look that
//! arrived before a poll started shares it. A run not in the tail joins it with the look (the
//! first looks at many runs share one poll) and is held there for [`LOOK_HOLD`] after the last
//! look; one the poll does not find is read on its own (concurrent looks share a read only if it
//! started after they arrived). A look no poll answers within about one BigQuery deadline (the
//! polls slow or failing) is answered 503 with Retry-After, without a read of its own. An ended
//! run that cannot change again (every end but ORPHANED, which the resumed instance's own
//! `lease_lost` end may follow) is kept in memory and answered from it at once. A stream
//! (`…/events`) is pushed each poll's state, never an older one.
//!
//! A caller that sends back the version it was told (`If-None-Match`: the `ETag` of its last
//! answer, from any instance; a look at the steps may send the run's `ETag` as well, or alone
//! on its first look) needs no poll of its own: it is answered at once from the tail's
//! latest state when that state is at least as far on as the caller's and was read within two
//! poll intervals ([`Seen`], [`Snapshot::covers`]), else as above. Such a caller's looks cost
//! nothing and wait for nothing once the run is in the tail; its reads never go back. A caller
//! that sends nothing back (its first look, or one after a write of its own it wants to see)
//! waits for a poll that started after it arrived.
//!
//! Cost: one query per poll per instance, for one watched or polled run or a thousand: 60 a
//! minute at the 1 s default while only streams watch, up to four times that while looks keep
//! asking; none while nothing is watched or polled. Run lists' first pages add at most one
//! query per poll interval and filter asked, for every org asking it ([`pages`]); a page asked
//! is held for [`LOOK_HOLD`] and read again every [`PAGE_REFRESH_POLLS`] poll intervals
//! meanwhile (half a query a poll interval per filter, for every org), and answered from a
//! read that ended at most [`PAGE_KEPT_POLLS`] intervals before, so a list look waits only
//! when nobody asked it recently. A
//! look waits for a poll: about one BigQuery read, two when a poll had just started.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::SharedClock;
use crate::domain::OrgSlug;
use crate::runs::{self, RunView, StepAttempt};
use crate::service_error::ServiceError;
use crate::settings::LiveSettings;
use crate::warehouse::{Warehouse, WarehouseError};

mod pages;

/// A run as its watchers see it: its state and its step attempts (in the order they were read:
/// the route puts them in run order).
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub run: RunView,
    pub steps: Vec<StepAttempt>,
}

impl Snapshot {
    /// What identifies this state (the SSE event id, the `ETag` of `GET …/runs/{run_id}` and
    /// `…/steps`): the run's status and last event time, its attempts and how many of them
    /// ended, and a hash of each attempt's status and end. Time that passes (a queued run's
    /// wait) is no change. The counts order states ([`Snapshot::covers`]).
    pub fn version(&self) -> String {
        let micros = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros()).unwrap_or(0);
        let mut hasher = fnv::Fnv::default();
        for s in &self.steps {
            hasher.write(s.step_id.as_bytes());
            hasher.write(&s.attempt.to_le_bytes());
            hasher.write(s.status.as_bytes());
            hasher.write(&micros(s.ended_at).to_le_bytes());
        }
        let (updated, attempts, ended) = self.progress();
        format!(
            "{}-{updated}-{attempts}-{ended}-{:016x}",
            self.run.status,
            hasher.finish()
        )
    }

    /// How far the run's history had come when this state was read: its last event's time, its
    /// step attempts, and those that ended. A run's events and attempts are only ever added, so
    /// a later read of it is at least as far on each.
    fn progress(&self) -> (i64, usize, usize) {
        (
            self.run.updated_at.map_or(0, |t| t.timestamp_micros()),
            self.steps.len(),
            self.steps.iter().filter(|s| s.ended_at.is_some()).count(),
        )
    }

    /// Whether a caller told `seen` may be told this state: it is that state, or it is further
    /// on every count and past it on one. Two different states as far on every count cannot be
    /// ordered: `false`.
    pub fn covers(&self, seen: &Seen) -> bool {
        let (updated, attempts, ended) = self.progress();
        if (updated, attempts, ended) == (seen.updated, seen.attempts, seen.ended) {
            return seen.version == self.version();
        }
        updated >= seen.updated && attempts >= seen.attempts && ended >= seen.ended
    }

    pub fn ended(&self) -> bool {
        crate::executor::RunStatus::is_terminal(&self.run.status)
    }

    /// Ended for good: every end but ORPHANED (the reaper's ORPHANED may be followed by the
    /// resumed instance's own, with `lease_lost`). Only such a state is kept as the run's last.
    pub fn settled(&self) -> bool {
        self.ended() && self.run.status != "ORPHANED"
    }

    /// Its step attempts as `…/steps` lists them (none before the run has left the queue).
    pub fn attempts(&self) -> &[StepAttempt] {
        if has_steps(&self.run) {
            &self.steps
        } else {
            &[]
        }
    }
}

/// A state of a run a caller was told (the `ETag` it sends back as `If-None-Match`), as far as
/// its [`Snapshot::version`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    version: String,
    updated: i64,
    attempts: usize,
    ended: usize,
}

impl Seen {
    /// A version as [`Snapshot::version`] writes it; `None` for anything else.
    pub fn parse(version: &str) -> Option<Self> {
        let mut parts = version.rsplitn(5, '-');
        let hash = parts.next()?;
        let ended = parts.next()?.parse().ok()?;
        let attempts = parts.next()?.parse().ok()?;
        let updated = parts.next()?.parse().ok()?;
        let status = parts.next()?;
        let well_formed = hash.len() == 16
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
            && !status.is_empty()
            && status.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
        well_formed.then(|| Self {
            version: version.to_string(),
            updated,
            attempts,
            ended,
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }
}

/// A small stable hash for [`Snapshot::version`] (std's hasher is randomized per process, and
/// an id must mean the same on every instance for `Last-Event-ID`).
mod fnv {
    pub struct Fnv(u64);
    impl Default for Fnv {
        fn default() -> Self {
            Fnv(0xcbf2_9ce4_8422_2325)
        }
    }
    impl Fnv {
        pub fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
            // A separator, so ("ab", "c") and ("a", "bc") differ.
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3) ^ 0xff;
        }
        pub fn finish(&self) -> u64 {
            self.0
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Past the streams this instance holds for the org, or in all.
    #[error("too many live streams ({scope})")]
    TooMany { scope: &'static str },
    /// The first read of a run nobody watched here failed.
    #[error(transparent)]
    Read(#[from] ServiceError),
}

type Key = (OrgSlug, String);

/// How long a run looked at (`GET` of it or of its steps) stays in the tail after the last look.
pub const LOOK_HOLD: Duration = Duration::from_secs(30);
/// Polls brought forward by looks start at least `LIVE_POLL_MS / LOOK_POLL_GAP` apart.
pub const LOOK_POLL_GAP: u32 = 4;
/// A look waits at most this many polls for one that started after it arrived (the one in
/// flight, then its own), then answers 503 (the polls are failing).
const LOOK_POLLS_AWAITED: usize = 3;
/// A look waits for those polls this long at most after it arrived (plus two poll intervals):
/// about one BigQuery deadline. Past it the look answers 503 with Retry-After; it does not read
/// its run on its own, since BigQuery is behind already. Under load (polls slower than two
/// intervals) each look reading its run on its own was a herd, one read per run at once, that
/// starved the polls further (`make bench-reads`: 947 such reads past their deadline, every
/// poller answered 503; then, waiting 8 s before reading, 592 reads past their deadline and
/// five polls in a row timed out behind them).
const LOOK_WAIT: Duration = Duration::from_secs(8);
/// What a look waiting for the tail's poll got ([`Inner::polled_after`]).
enum Polled {
    Read(Arc<Snapshot>),
    /// The run left the tail: it is read on its own.
    Gone,
    /// No poll answered for it in time: 503, rather than one more read for a BigQuery behind.
    Late,
}

/// Runs the tail reads at most; looks past it are read from BigQuery each time.
const MAX_TAILED: usize = 5_000;

/// One read of a run from BigQuery, shared by every look that asks while it runs.
type Flight = Arc<tokio::sync::OnceCell<Result<Option<Arc<Snapshot>>, WarehouseError>>>;

/// The instance's live runs (cheap to clone).
#[derive(Clone)]
pub struct LiveRuns {
    inner: Arc<Inner>,
}

struct Inner {
    warehouse: Warehouse,
    clock: SharedClock,
    settings: LiveSettings,
    state: Mutex<State>,
    ended: moka::sync::Cache<Key, Arc<Snapshot>>,
    /// Reads of runs not in the tail, in flight, with when each started.
    reading: Mutex<HashMap<Key, (Instant, Flight)>>,
    /// First pages of run lists, by org, the org's write generation and the query as sent:
    /// one read for every caller asking the same within [`PAGE_KEPT_POLLS`] poll intervals.
    pages: moka::future::Cache<PageKey, Arc<KeptPage>>,
    /// First pages asked recently, kept fresh in the background ([`Inner::refresh_pages`]).
    held_pages: Mutex<HeldPages>,
    /// The reads of first pages, batched across orgs.
    first_pages: Arc<pages::FirstPages>,
    /// Bumped by each run event of the org this instance writes: its first pages are read again.
    generations: Mutex<HashMap<OrgSlug, u64>>,
    /// A look waits for a poll: the tail starts the next one as soon as the gap allows.
    demand: tokio::sync::Notify,
    /// Counts the tail's finished polls (looks wait for the one after they arrived).
    polls: watch::Sender<u64>,
    /// When this instance's model began: earlier than any look (a run not read yet is dated
    /// from it).
    born: Instant,
}

/// A first page kept: the org, its write generation, and the query as sent.
type PageKey = (OrgSlug, u64, String);

/// A first page as a batch read found it, and when that read started.
struct KeptPage {
    read_at: Instant,
    page: runs::RunPage,
}

/// First pages held: read again in the background while they are asked.
#[derive(Default)]
struct HeldPages {
    pages: HashMap<PageKey, HeldPage>,
    /// The task that reads them runs (it stops, under this lock, once none is held).
    refreshing: bool,
}

/// A held first page: held until then, its filter's batch key, and what reads it again.
#[derive(Clone)]
struct HeldPage {
    until: Instant,
    batch: String,
    query: runs::RunsQuery,
    tokens: crate::page_token::PageTokens,
}

/// The task keeping held pages fresh: when it stops other than by finding none held (it
/// panicked or was cancelled), the next ask starts it again.
struct PageRefresher {
    inner: Arc<Inner>,
    finished: bool,
}

impl Drop for PageRefresher {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let held = &self.inner.held_pages;
        held.lock().unwrap_or_else(|e| e.into_inner()).refreshing = false;
    }
}

/// Held first pages are read again every this many poll intervals: half a query a poll interval
/// per filter held, for every org (the tail adds one a poll).
pub const PAGE_REFRESH_POLLS: u32 = 2;
/// A first page is answered from a read that ended at most this many poll intervals before:
/// one refresh period and a poll interval's margin for the read.
pub const PAGE_KEPT_POLLS: u32 = PAGE_REFRESH_POLLS + 1;
/// First pages held at most (each org and query as sent); more are read when asked only.
const PAGES_HELD: usize = 1_000;
/// Filters ([`runs::RunsQuery::batch_key`]) whose pages are held at once, at most: each costs
/// its own query a refresh, so pages under other filters are read when asked only (a caller
/// varying its filters cannot make an instance read for it in the background).
const FILTERS_HELD: usize = 2;

/// Whether one more page, under the filter `batch`, may be held beside those held (their
/// filters, one per page): fewer than [`PAGES_HELD`] are, and its filter is one of them or
/// fewer than [`FILTERS_HELD`] filters are held.
fn room_to_hold<'a>(held: impl Iterator<Item = &'a str>, batch: &str) -> bool {
    let mut pages = 0;
    let mut filters = std::collections::HashSet::new();
    for filter in held {
        pages += 1;
        filters.insert(filter);
    }
    pages < PAGES_HELD && (filters.contains(batch) || filters.len() < FILTERS_HELD)
}

/// Settled runs kept for later watchers and looks (such a run never changes): at most this
/// many.
const ENDED_KEPT: u64 = 10_000;
/// Runs in the first pages of run lists kept (each page [`PAGE_KEPT_POLLS`] poll intervals
/// after its read): at most this
/// many in all, whatever the pages' sizes.
const PAGE_RUNS_KEPT: u64 = 100_000;

/// A failure shared by every caller of one read, as each caller's own.
fn unshared(e: &ServiceError) -> ServiceError {
    match e {
        ServiceError::Warehouse(w) => ServiceError::Warehouse(w.clone()),
        ServiceError::Invalid(m) => ServiceError::Invalid(m.clone()),
        ServiceError::InvalidField(p) => ServiceError::InvalidField(p.clone()),
        ServiceError::NotFound => ServiceError::NotFound,
        other => ServiceError::Warehouse(WarehouseError::Decode(other.to_string())),
    }
}

#[derive(Default)]
struct State {
    runs: HashMap<Key, Watched>,
    streams_per_org: HashMap<OrgSlug, usize>,
    streams: usize,
    /// The tail task runs (it stops, under this lock, once nothing is watched).
    tailing: bool,
}

/// A run the tail reads.
struct Watched {
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    /// No event of the run is older (its creation, a minute's margin in the read): the first
    /// partition its reads need.
    since: DateTime<Utc>,
    /// Looked at: kept in the tail until then, watched or not.
    held_until: Option<Instant>,
    /// When the read of the latest state started: a read that started earlier (a look's, slower
    /// than a poll) never replaces it.
    read_at: Instant,
}

impl Watched {
    fn new(first: Arc<Snapshot>, since: DateTime<Utc>, read_at: Instant) -> Self {
        Self {
            tx: watch::channel(Some(first)).0,
            since,
            held_until: None,
            read_at,
        }
    }

    /// A run first looked at here, not read yet: the tail's next poll reads it with the others.
    /// Its reads need every partition of the longest window until then.
    fn unread(since: DateTime<Utc>, until: Instant, born: Instant) -> Self {
        Self {
            tx: watch::channel(None).0,
            since,
            held_until: Some(until),
            read_at: born,
        }
    }

    /// Its latest state (`None` while it was not read yet).
    fn latest(&self) -> Option<Arc<Snapshot>> {
        self.tx.borrow().clone()
    }

    /// [`Watched::update`], dating its reads from `since` once it is read the first time.
    fn take(&mut self, snapshot: Arc<Snapshot>, read_at: Instant, since: DateTime<Utc>) {
        if self.tx.borrow().is_none() {
            self.since = since;
        }
        self.update(snapshot, read_at);
    }

    /// Takes `snapshot` (read by a read that started at `read_at`), telling the watchers when it
    /// changed, unless the latest state was read later.
    fn update(&mut self, snapshot: Arc<Snapshot>, read_at: Instant) {
        if read_at < self.read_at {
            return;
        }
        self.read_at = read_at;
        let changed = self
            .tx
            .borrow()
            .as_ref()
            .is_none_or(|last| last.version() != snapshot.version());
        if changed {
            self.tx.send_replace(Some(snapshot));
        }
    }
}

/// One watcher's hold on a run: the latest snapshot, and its place under the caps (given back
/// when dropped).
pub struct Subscription {
    pub snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    _slot: Slot,
}

struct Slot {
    inner: Arc<Inner>,
    org: OrgSlug,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.inner.state.lock().unwrap();
        state.streams -= 1;
        if let Some(n) = state.streams_per_org.get_mut(&self.org) {
            *n -= 1;
            if *n == 0 {
                state.streams_per_org.remove(&self.org);
            }
        }
    }
}

impl LiveRuns {
    pub fn new(warehouse: Warehouse, clock: SharedClock, settings: LiveSettings) -> Self {
        let poll = settings.poll;
        let first_pages = Arc::new(pages::FirstPages::new(warehouse.clone(), poll));
        Self {
            inner: Arc::new(Inner {
                first_pages,
                warehouse,
                clock,
                settings,
                state: Mutex::new(State::default()),
                ended: moka::sync::Cache::builder()
                    .max_capacity(ENDED_KEPT)
                    .time_to_idle(Duration::from_secs(3600))
                    .build(),
                reading: Mutex::new(HashMap::new()),
                held_pages: Mutex::default(),
                pages: moka::future::Cache::builder()
                    .weigher(|_, kept: &Arc<KeptPage>| kept.page.runs.len().max(1) as u32)
                    .max_capacity(PAGE_RUNS_KEPT)
                    .time_to_live(poll * PAGE_KEPT_POLLS)
                    .build(),
                generations: Mutex::new(HashMap::new()),
                demand: tokio::sync::Notify::new(),
                polls: watch::channel(0).0,
                born: Instant::now(),
            }),
        }
    }

    /// The run as `GET …/runs/{run_id}` (and its steps) answer it: as a read that started after
    /// this look arrived found it, or from the settled runs kept. That read is the tail's next
    /// poll: a run not read here yet joins the tail, so the first looks at many runs share its
    /// one query. Else (the poll did not find the run, or the tail is full) a read of its own,
    /// shared with the looks that arrived before it started. The run then stays in the tail for
    /// [`LOOK_HOLD`] after this look. `Ok(None)`: the org has no such run. No poll answering
    /// within about one BigQuery deadline (they are slow or failing) is a 503: the look does not
    /// add a read of its own ([`LOOK_WAIT`]).
    ///
    /// A caller that says which states it was told (`seen`: the run's, its steps', from any
    /// instance) is answered at once with the tail's latest state when that state
    /// [`Snapshot::covers`] each of them and its poll started within two poll intervals: never
    /// older than what the caller knows, and as fresh as a stream's. Otherwise it waits for a
    /// poll as above.
    pub async fn look(
        &self,
        org: &OrgSlug,
        run_id: &str,
        seen: &[Seen],
    ) -> Result<Option<Arc<Snapshot>>, ServiceError> {
        let key = (org.clone(), run_id.to_string());
        let arrived = Instant::now();
        let hold = arrived + LOOK_HOLD;
        let tailed = {
            let mut state = self.inner.state.lock().unwrap();
            match state.runs.get_mut(&key) {
                Some(watched) => {
                    watched.held_until = watched.held_until.max(Some(hold));
                    let recent = watched.read_at + self.inner.settings.poll * 2 >= arrived;
                    if let (false, Some(latest), true) = (seen.is_empty(), watched.latest(), recent)
                    {
                        if seen.iter().all(|seen| latest.covers(seen)) {
                            return Ok(Some(latest));
                        }
                    }
                    true
                }
                None => {
                    if let Some(settled) = self.inner.ended.get(&key) {
                        return Ok(Some(settled));
                    }
                    if state.runs.len() < MAX_TAILED {
                        let unread =
                            Watched::unread(self.inner.longest_window(), hold, self.inner.born);
                        state.runs.insert(key.clone(), unread);
                        self.inner.start_tail(&mut state);
                        true
                    } else {
                        false
                    }
                }
            }
        };
        if tailed {
            match self.inner.polled_after(&key, arrived).await {
                Polled::Read(snapshot) => return Ok(Some(snapshot)),
                Polled::Late => return Err(ServiceError::Warehouse(WarehouseError::Timeout)),
                Polled::Gone => {}
            }
        }
        let (read_at, read) = self.inner.shared_read(&key, Some(arrived)).await;
        let Some(snapshot) = read.map_err(ServiceError::Warehouse)? else {
            return Ok(None);
        };
        self.inner.hold(key, snapshot.clone(), read_at, hold);
        Ok(Some(snapshot))
    }

    /// This instance's write of an event of `run_id` (of `org`) has landed: when the run is in
    /// the tail its next poll comes as soon as the gap allows, so its streams here get the
    /// change without waiting out `LIVE_POLL_MS` (see [`crate::run_log::RunLog::on_written`]).
    pub fn written(&self, org: &str, run_id: &str) {
        let Ok(org) = OrgSlug::parse(org) else {
            return;
        };
        let key = (org, run_id.to_string());
        if self.inner.state.lock().unwrap().runs.contains_key(&key) {
            self.inner.demand.notify_one();
        }
        // A read that started before the write may miss it: later looks start their own.
        self.inner.reading.lock().unwrap().remove(&key);
        self.inner.ended.invalidate(&key);
        *self
            .inner
            .generations
            .lock()
            .unwrap()
            .entry(key.0)
            .or_insert(0) += 1;
    }

    /// The first page of one of the org's run lists under `query` (`query_string`: as sent;
    /// `filter`: the query's filter now), from the latest read of it: one that ended at most
    /// [`PAGE_KEPT_POLLS`] poll intervals (`LIVE_POLL_MS`) before the caller asked and started
    /// after any run event of the org this instance wrote. A page asked is held for
    /// [`LOOK_HOLD`] after the last ask and read again every [`PAGE_REFRESH_POLLS`] poll
    /// intervals meanwhile, with every held page of every org in one query per filter
    /// ([`Inner::refresh_pages`]), so callers who keep asking never wait for a read; a caller
    /// with no page that recent waits for the next read, which every caller asking meanwhile
    /// shares ([`pages`]).
    pub async fn first_page(
        &self,
        org: &OrgSlug,
        query_string: &str,
        query: &runs::RunsQuery,
        filter: runs::RunFilter,
        tokens: &crate::page_token::PageTokens,
    ) -> Result<runs::RunPage, ServiceError> {
        let generation = self
            .inner
            .generations
            .lock()
            .unwrap()
            .get(org)
            .copied()
            .unwrap_or(0);
        let key = (org.clone(), generation, query_string.to_string());
        let batch = query.batch_key(&filter);
        self.inner.hold_page(&key, &batch, query, tokens);
        if let Some(kept) = self.inner.pages.get(&key).await {
            return Ok(kept.page.clone());
        }
        self.inner
            .pages
            .try_get_with(key, self.inner.read_page(org, &batch, filter, tokens))
            .await
            .map(|kept| kept.page.clone())
            .map_err(|e: Arc<ServiceError>| unshared(&e))
    }

    /// Watches `run_id` of `org`: joins its reader here, else looks at it first as a `GET`
    /// does ([`LiveRuns::look`]: it joins the tail, so the first streams of many runs share one
    /// poll) and is pushed the tail's states from then on. `Ok(None)`: the org has no such run.
    pub async fn watch(
        &self,
        org: &OrgSlug,
        run_id: &str,
    ) -> Result<Option<Subscription>, LiveError> {
        if let Some(joined) = self.join(org, run_id)? {
            return Ok(Some(joined));
        }
        // The state looked at was read at or after now: a later state the tail holds by the
        // time it subscribes is not replaced by it.
        let asked = Instant::now();
        match self.look(org, run_id, &[]).await? {
            Some(first) => Ok(Some(self.subscribe(
                org,
                run_id,
                (*first).clone(),
                asked,
            )?)),
            None => Ok(None),
        }
    }

    /// Watches a run this instance already knows (watched now, or ended and kept): no read.
    /// `Ok(None)` when it does not know it: read it and [`LiveRuns::subscribe`].
    pub fn join(&self, org: &OrgSlug, run_id: &str) -> Result<Option<Subscription>, LiveError> {
        let key = (org.clone(), run_id.to_string());
        let mut state = self.inner.state.lock().unwrap();
        if let Some(watched) = state.runs.get(&key).filter(|w| w.latest().is_some()) {
            let snapshots = watched.tx.subscribe();
            let slot = self.inner.take_slot(&mut state, org)?;
            return Ok(Some(Subscription {
                snapshots,
                _slot: slot,
            }));
        }
        match self.inner.ended.get(&key) {
            Some(ended) => {
                let slot = self.inner.take_slot(&mut state, org)?;
                Ok(Some(Subscription {
                    snapshots: watch::channel(Some(ended)).1,
                    _slot: slot,
                }))
            }
            None => Ok(None),
        }
    }

    /// Watches `run_id` of `org`: the run's reader is started if nobody watched it yet. `first`
    /// (the run as a read that started at `read_at` found it) is the first snapshot of a newly
    /// watched run.
    fn subscribe(
        &self,
        org: &OrgSlug,
        run_id: &str,
        first: Snapshot,
        read_at: Instant,
    ) -> Result<Subscription, LiveError> {
        let mut state = self.inner.state.lock().unwrap();
        let slot = self.inner.take_slot(&mut state, org)?;
        let key = (org.clone(), run_id.to_string());
        let first = Arc::new(first);
        let since = self.inner.since(&first);
        if let Some(watched) = state.runs.get_mut(&key) {
            watched.take(first, read_at, since);
            return Ok(Subscription {
                snapshots: watched.tx.subscribe(),
                _slot: slot,
            });
        }
        if first.ended() {
            if first.settled() {
                self.inner.ended.insert(key, first.clone());
            }
            return Ok(Subscription {
                snapshots: watch::channel(Some(first)).1,
                _slot: slot,
            });
        }
        let watched = Watched::new(first, since, read_at);
        let snapshots = watched.tx.subscribe();
        state.runs.insert(key, watched);
        self.inner.start_tail(&mut state);
        Ok(Subscription {
            snapshots,
            _slot: slot,
        })
    }
}

impl Inner {
    /// A first page as the next batch read of its filter finds it ([`pages`]).
    async fn read_page(
        &self,
        org: &OrgSlug,
        batch: &str,
        filter: runs::RunFilter,
        tokens: &crate::page_token::PageTokens,
    ) -> Result<Arc<KeptPage>, ServiceError> {
        let (rows, used, read_at) = self.first_pages.rows(org, batch, filter).await?;
        Ok(Arc::new(KeptPage {
            read_at,
            page: runs::first_page_of(&rows, tokens, org, &used),
        }))
    }

    /// Holds the page of `key` (under the filter `batch`) for [`LOOK_HOLD`] from now, up to
    /// [`PAGES_HELD`] pages under [`FILTERS_HELD`] filters, and starts the task that keeps held
    /// pages fresh unless it runs.
    fn hold_page(
        self: &Arc<Self>,
        key: &PageKey,
        batch: &str,
        query: &runs::RunsQuery,
        tokens: &crate::page_token::PageTokens,
    ) {
        let until = Instant::now() + LOOK_HOLD;
        let mut held = self.held_pages.lock().unwrap();
        if let Some(page) = held.pages.get_mut(key) {
            page.until = until;
        } else if room_to_hold(held.pages.values().map(|page| page.batch.as_str()), batch) {
            held.pages.insert(
                key.clone(),
                HeldPage {
                    until,
                    batch: batch.to_string(),
                    query: query.clone(),
                    tokens: tokens.clone(),
                },
            );
        }
        if !held.refreshing && !held.pages.is_empty() {
            held.refreshing = true;
            tokio::spawn(self.clone().refresh_pages());
        }
    }

    /// Every [`PAGE_REFRESH_POLLS`] poll intervals, reads every held page again (all orgs'
    /// pages under one filter in one query: they join one batch read), until none is held: a
    /// hold ends [`LOOK_HOLD`] after the page's last ask, or with a run event of its org this
    /// instance writes (its next ask reads it at once). A page read replaces the kept one
    /// unless a later read's is kept; a failed read keeps the old one until it ages out.
    async fn refresh_pages(self: Arc<Self>) {
        let mut running = PageRefresher {
            inner: self.clone(),
            finished: false,
        };
        loop {
            tokio::time::sleep(self.settings.poll * PAGE_REFRESH_POLLS).await;
            let due: Vec<(PageKey, HeldPage)> = {
                let mut held = self.held_pages.lock().unwrap();
                let now = Instant::now();
                let generations = self.generations.lock().unwrap();
                held.pages.retain(|(org, generation, _), page| {
                    page.until > now && generations.get(org).copied().unwrap_or(0) == *generation
                });
                if held.pages.is_empty() {
                    held.refreshing = false;
                    running.finished = true;
                    return;
                }
                held.pages
                    .iter()
                    .map(|(key, page)| (key.clone(), page.clone()))
                    .collect()
            };
            let now = self.clock.now();
            let reads = due.into_iter().filter_map(|(key, page)| {
                let filter = page.query.filter(now).ok()?;
                let batch = page.query.batch_key(&filter);
                let this = &self;
                Some(async move {
                    match this.read_page(&key.0, &batch, filter, &page.tokens).await {
                        Ok(read) => {
                            let kept = this.pages.get(&key).await;
                            if kept.is_none_or(|kept| kept.read_at < read.read_at) {
                                this.pages.insert(key, read).await;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "reading a held run list page failed"),
                    }
                })
            });
            futures_util::future::join_all(reads).await;
        }
    }

    /// The first partition a run's reads need: its creation (else its last event, else the
    /// longest window).
    fn since(&self, snapshot: &Snapshot) -> DateTime<Utc> {
        snapshot
            .run
            .created_at
            .or(snapshot.run.updated_at)
            .unwrap_or_else(|| self.longest_window())
    }

    /// The first partition of the longest window a read may need (a run not read yet).
    fn longest_window(&self) -> DateTime<Utc> {
        self.clock.now() - chrono::Duration::days(runs::MAX_WINDOW_DAYS)
    }

    /// Starts the tail unless it runs (under the state's lock).
    fn start_tail(self: &Arc<Self>, state: &mut State) {
        if !state.tailing {
            state.tailing = true;
            tokio::spawn(self.clone().tail());
        }
    }

    /// The run as the first poll of the tail that started at or after `arrived` found it (a poll
    /// brought forward for it), or the settled state kept: [`Polled::Read`]. [`Polled::Gone`]
    /// when the run left the tail (a poll did not find it, or the tail stopped): the look reads
    /// it itself. [`Polled::Late`] when no poll answered for it within [`LOOK_POLLS_AWAITED`]
    /// polls (they failed) or within [`LOOK_WAIT`] and two poll intervals (they are slow).
    async fn polled_after(&self, key: &Key, arrived: Instant) -> Polled {
        let mut polls = self.polls.subscribe();
        let until = arrived + LOOK_WAIT + self.settings.poll * 2;
        for _ in 0..LOOK_POLLS_AWAITED {
            self.demand.notify_one();
            match tokio::time::timeout_at(until, polls.changed()).await {
                Ok(Ok(())) => {}
                _ => return Polled::Late,
            }
            let state = self.state.lock().unwrap();
            match state.runs.get(key) {
                // (A write of this instance since that poll started may or may not be in it:
                // either answer is consistent for a look that arrived before the poll.)
                Some(watched) if watched.read_at >= arrived => {
                    return watched.latest().map_or(Polled::Gone, Polled::Read);
                }
                // The poll in flight when the look arrived: the next one is its own.
                Some(_) => {}
                // Settled (by a poll, or a read) and kept: it never changes again.
                None => return self.ended.get(key).map_or(Polled::Gone, Polled::Read),
            }
        }
        Polled::Late
    }

    /// The run read from BigQuery by a read that started after `not_before`: joined when one is
    /// in flight, else started. A read in flight that started earlier is waited out first, and
    /// every look that waited for it shares the one read started after it: a run has at most
    /// one read in flight, whatever the number of looks (under load, one read each would be
    /// refused by BigQuery's query limit and answer every look 503). Returns when the read
    /// started, and what it found.
    async fn shared_read(
        &self,
        key: &Key,
        not_before: Option<Instant>,
    ) -> (Instant, Result<Option<Arc<Snapshot>>, WarehouseError>) {
        let (org, run_id) = key;
        let read_now = || async {
            match read(&self.warehouse, org, run_id, self.clock.now()).await {
                Ok(found) => Ok(found.map(Arc::new)),
                Err(ServiceError::Warehouse(e)) => Err(e),
                Err(other) => Err(WarehouseError::Decode(other.to_string())),
            }
        };
        loop {
            let (started, flight, earlier) = {
                let mut reading = self.reading.lock().unwrap();
                match reading.get(key) {
                    Some((started, flight)) if not_before.is_none_or(|s| s <= *started) => {
                        (*started, flight.clone(), false)
                    }
                    Some((started, flight)) if !flight.initialized() => {
                        (*started, flight.clone(), true)
                    }
                    _ => {
                        let fresh = (Instant::now(), Flight::default());
                        reading.insert(key.clone(), fresh.clone());
                        (fresh.0, fresh.1, false)
                    }
                }
            };
            if !earlier {
                let result = flight.get_or_init(&read_now).await.clone();
                self.landed(key, &flight);
                return (started, result);
            }
            // Waited out. Should its reader have gone before it answered, this look reads in
            // its place: that read starts now, after `not_before`, so its answer serves.
            let began = Instant::now();
            let mut ran = false;
            let result = flight
                .get_or_init(|| {
                    ran = true;
                    read_now()
                })
                .await
                .clone();
            self.landed(key, &flight);
            if ran {
                return (began, result);
            }
        }
    }

    /// A read of `key` has answered: later looks start their own.
    fn landed(&self, key: &Key, flight: &Flight) {
        let mut reading = self.reading.lock().unwrap();
        if reading
            .get(key)
            .is_some_and(|(_, current)| Arc::ptr_eq(current, flight))
        {
            reading.remove(key);
        }
    }

    /// Keeps a run just read (at `read_at`) in the tail until `until` at least; a settled run
    /// goes to the settled runs kept instead.
    fn hold(self: &Arc<Self>, key: Key, snapshot: Arc<Snapshot>, read_at: Instant, until: Instant) {
        let mut state = self.state.lock().unwrap();
        if snapshot.settled() {
            if let Some(mut watched) = state.runs.remove(&key) {
                watched.update(snapshot.clone(), read_at);
            }
            self.ended.insert(key, snapshot);
            return;
        }
        if let Some(watched) = state.runs.get_mut(&key) {
            let since = self.since(&snapshot);
            watched.take(snapshot, read_at, since);
            watched.held_until = watched.held_until.max(Some(until));
            return;
        }
        if state.runs.len() >= MAX_TAILED {
            return;
        }
        let since = self.since(&snapshot);
        let mut watched = Watched::new(snapshot, since, read_at);
        watched.held_until = Some(until);
        state.runs.insert(key, watched);
        self.start_tail(&mut state);
    }

    /// A place under the caps, or which cap is full.
    fn take_slot(self: &Arc<Self>, state: &mut State, org: &OrgSlug) -> Result<Slot, LiveError> {
        if state.streams >= self.settings.per_instance {
            return Err(LiveError::TooMany {
                scope: "this instance",
            });
        }
        let of_org = state.streams_per_org.get(org).copied().unwrap_or(0);
        if of_org >= self.settings.per_org {
            return Err(LiveError::TooMany { scope: "the org" });
        }
        state.streams += 1;
        *state.streams_per_org.entry(org.clone()).or_insert(0) += 1;
        Ok(Slot {
            inner: self.clone(),
            org: org.clone(),
        })
    }

    /// Reads every watched run each poll, sending each changed state, until nothing is
    /// watched.
    /// Polls start every `LIVE_POLL_MS` (a poll slower than that delays the next, never two at
    /// once), or sooner when a look waits for one, at least `LIVE_POLL_MS / LOOK_POLL_GAP` after
    /// the last one started.
    async fn tail(self: Arc<Self>) {
        let gap = self.settings.poll / LOOK_POLL_GAP;
        let mut last_started: Option<Instant> = None;
        loop {
            let next = last_started.map_or_else(
                || Instant::now() + self.settings.poll,
                |at| at + self.settings.poll,
            );
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = self.demand.notified() => {
                    if let Some(at) = last_started {
                        tokio::time::sleep_until(at + gap).await;
                    }
                }
            }
            let Some(watched) = self.watched() else {
                // Looks waiting now find the run gone from the tail and read it themselves.
                self.polls.send_modify(|n| *n += 1);
                return;
            };
            last_started = Some(Instant::now());
            self.poll(watched).await;
            self.polls.send_modify(|n| *n += 1);
        }
    }

    /// The runs somebody watches, with the first partition their reads need; the runs nobody
    /// watches any more leave. `None` (and the tail stops) when nothing is left, under the
    /// lock that subscribing takes, so a run watched from now on starts a new tail.
    fn watched(&self) -> Option<(Vec<Key>, DateTime<Utc>)> {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        state
            .runs
            .retain(|_, w| w.tx.receiver_count() > 0 || w.held_until.is_some_and(|u| u > now));
        if state.runs.is_empty() {
            state.tailing = false;
            return None;
        }
        let since = state.runs.values().map(|w| w.since).min()?;
        Some((state.runs.keys().cloned().collect(), since))
    }

    /// One look at the watched runs: their states and step attempts in one query. A failed read
    /// leaves the watchers with the last state; the next poll tries again.
    async fn poll(&self, (keys, since): (Vec<Key>, DateTime<Utc>)) {
        let now = self.clock.now();
        let read_at = Instant::now();
        let mut read = match runs::get_many_with_steps(&self.warehouse, &keys, since, now).await {
            Ok(read) => read,
            Err(e) => {
                log_failed_read(&e, keys.len(), "live runs read failed");
                return;
            }
        };
        let mut ended = Vec::new();
        {
            let mut state = self.state.lock().unwrap();
            for key in keys {
                let Some(watched) = state.runs.get_mut(&key) else {
                    continue;
                };
                let Some((run, steps)) = read.remove(&key) else {
                    // A run first looked at here that this poll did not find: the looks waiting
                    // for it read it themselves (it may not exist, or not be readable yet).
                    if watched.latest().is_none() {
                        state.runs.remove(&key);
                    }
                    continue;
                };
                let steps = if has_steps(&run) { steps } else { Vec::new() };
                let snapshot = Snapshot { run, steps };
                // An ORPHANED end stays read while watched or looked at: the resumed instance's
                // own end may follow it.
                let settled = snapshot.settled();
                let since = self.since(&snapshot);
                watched.take(Arc::new(snapshot), read_at, since);
                if settled {
                    ended.push(key);
                }
            }
        }
        if ended.is_empty() {
            return;
        }
        let mut state = self.state.lock().unwrap();
        for key in ended {
            if let Some(watched) = state.runs.remove(&key) {
                if let Some(last) = watched.latest() {
                    self.ended.insert(key, last);
                }
            }
        }
    }
}

/// Whether the run has left the queue and its admission, so it may have step attempts to read.
fn has_steps(run: &RunView) -> bool {
    !matches!(run.status.as_str(), "QUEUED" | "PENDING")
}

/// BigQuery away or busy is expected now and then (debug: the next poll tries again); anything
/// else (a query BigQuery refuses) would fail every poll, and is a warning.
fn log_failed_read(e: &ServiceError, runs: usize, what: &'static str) {
    match e {
        ServiceError::Warehouse(w) if w.is_unavailable() => {
            tracing::debug!(error = %e, runs, "{what}")
        }
        _ => tracing::warn!(error = %e, runs, "{what}"),
    }
}

/// A run and its step attempts, read now (the steps only once it has left the queue).
async fn read(
    warehouse: &Warehouse,
    org: &OrgSlug,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Snapshot>, ServiceError> {
    let Some((run, steps)) = runs::get_with_steps(warehouse, org, run_id, now).await? else {
        return Ok(None);
    };
    let steps = if has_steps(&run) { steps } else { Vec::new() };
    Ok(Some(Snapshot { run, steps }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(status: &str, steps: &[(&str, i64, &str)]) -> Snapshot {
        Snapshot {
            run: RunView {
                run_id: "r".into(),
                pipeline_id: "p".into(),
                status: status.into(),
                trigger: None,
                triggered_by: None,
                parameters: serde_json::Value::Null,
                error_class: None,
                error_summary: None,
                created_at: None,
                started_at: None,
                updated_at: DateTime::from_timestamp(1_800_000_000, 0),
                ended_at: None,
                duration_ms: None,
                rerun_of: None,
                schedule_id: None,
                logical_time: None,
                backfill_id: None,
                queued_secs: Some(1.0),
                bytes_billed: None,
                estimated_cost_usd: None,
            },
            steps: steps
                .iter()
                .map(|(id, attempt, status)| StepAttempt {
                    step_id: (*id).into(),
                    attempt: *attempt,
                    status: (*status).into(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn a_read_that_started_before_the_latest_never_replaces_it() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let running = Arc::new(snapshot("RUNNING", &[("load", 1, "RUNNING")]));
        let mut watched = Watched::new(running.clone(), Utc::now(), at(100));
        let mut seen = watched.tx.subscribe();
        // A poll that started later brings the step's end.
        let done = Arc::new(snapshot("RUNNING", &[("load", 1, "SUCCEEDED")]));
        watched.update(done.clone(), at(200));
        assert!(seen.has_changed().unwrap());
        assert_eq!(
            seen.borrow_and_update().as_ref().unwrap().version(),
            done.version()
        );
        // A look's read that started before that poll answers late: it is not taken.
        watched.update(running.clone(), at(150));
        assert!(!seen.has_changed().unwrap());
        assert_eq!(watched.latest().unwrap().version(), done.version());
        assert_eq!(watched.read_at, at(200));
    }

    #[test]
    fn only_ends_that_cannot_be_followed_are_settled() {
        for status in ["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "REFUSED"] {
            let s = snapshot(status, &[]);
            assert!(s.ended() && s.settled(), "{status}");
        }
        let orphaned = snapshot("ORPHANED", &[]);
        assert!(orphaned.ended() && !orphaned.settled());
        for status in ["QUEUED", "PENDING", "RUNNING"] {
            assert!(!snapshot(status, &[]).settled(), "{status}");
        }
        // Steps show only once the run has left the queue.
        assert!(
            snapshot("PENDING", &[("load", 1, "RUNNING")])
                .attempts()
                .is_empty()
        );
        assert_eq!(
            snapshot("RUNNING", &[("load", 1, "RUNNING")])
                .attempts()
                .len(),
            1
        );
    }

    #[test]
    fn pages_are_held_under_two_filters_at_most_and_a_thousand_pages_at_most() {
        assert!(room_to_hold(std::iter::empty(), "a"));
        assert!(room_to_hold(["a", "a"].into_iter(), "b"), "a second filter");
        assert!(
            room_to_hold(["a", "b", "a"].into_iter(), "b"),
            "a held filter's page"
        );
        assert!(!room_to_hold(["a", "b"].into_iter(), "c"), "a third filter");
        let full: Vec<&str> = std::iter::repeat_n("a", PAGES_HELD).collect();
        assert!(!room_to_hold(full.iter().copied(), "a"), "a thousand pages");
        assert!(room_to_hold(full[1..].iter().copied(), "a"));
    }

    #[test]
    fn a_state_covers_what_a_caller_saw_only_when_it_is_that_state_or_further_on() {
        let running = snapshot("RUNNING", &[("load", 1, "RUNNING")]);
        let mut done = snapshot("RUNNING", &[("load", 1, "SUCCEEDED")]);
        done.steps[0].ended_at = DateTime::from_timestamp(1_800_000_001, 0);
        let mut ended = done.clone();
        ended.run.status = "SUCCEEDED".into();
        ended.run.updated_at = DateTime::from_timestamp(1_800_000_002, 0);
        let seen = |s: &Snapshot| Seen::parse(&s.version()).expect("a version parses");
        // Told an earlier state (or this one): this state may be answered.
        assert!(running.covers(&seen(&running)));
        assert!(done.covers(&seen(&running)));
        assert!(ended.covers(&seen(&running)) && ended.covers(&seen(&done)));
        // Told a later state: never answered an earlier one.
        assert!(!running.covers(&seen(&done)));
        assert!(!running.covers(&seen(&ended)) && !done.covers(&seen(&ended)));
        // As far on every count but another state: cannot be ordered, so not answered.
        let mut other = running.clone();
        other.steps[0].status = "CANCELLED".into();
        assert!(!other.covers(&seen(&running)) && !running.covers(&seen(&other)));
    }

    #[test]
    fn only_a_version_as_the_service_writes_it_is_taken_for_what_a_caller_saw() {
        let running = snapshot("TIMED_OUT", &[("load", 1, "RUNNING")]);
        let version = running.version();
        let seen = Seen::parse(&version).unwrap();
        assert_eq!(seen.version(), version);
        assert_eq!(
            (seen.updated, seen.attempts, seen.ended),
            (1_800_000_000_000_000, 1, 0)
        );
        for bad in [
            "",
            "*",
            "RUNNING",
            "RUNNING-1-2-3",
            "RUNNING-x-1-0-0123456789abcdef",
            "RUNNING-1-1-0-0123456789abcdeg",
            "RUNNING-1-1-0-0123",
            "running-1-1-0-0123456789abcdef",
            "-1-1-0-0123456789abcdef",
        ] {
            assert_eq!(Seen::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_version_changes_with_any_state_and_not_with_time_waited() {
        let queued = snapshot("QUEUED", &[]);
        let mut waited = queued.clone();
        waited.run.queued_secs = Some(30.0);
        assert_eq!(queued.version(), waited.version());
        let running = snapshot("RUNNING", &[("load", 1, "RUNNING")]);
        let done = snapshot("RUNNING", &[("load", 1, "SUCCEEDED")]);
        let retried = snapshot("RUNNING", &[("load", 1, "FAILED"), ("load", 2, "RUNNING")]);
        let versions = [&queued, &running, &done, &retried].map(Snapshot::version);
        for (i, a) in versions.iter().enumerate() {
            for b in &versions[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The same state read again (on another instance too) has the same id.
        assert_eq!(
            done.version(),
            snapshot("RUNNING", &[("load", 1, "SUCCEEDED")]).version()
        );
    }
}
