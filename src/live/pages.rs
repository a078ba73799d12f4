//! First pages of run lists, read in batches: every org whose first page is asked under the
//! same filter while a read of such pages runs is read by the next one, all orgs in one query
//! (`runs/first_pages_by_orgs.sql`; group commit, for reads). At most one such read per filter
//! is in flight per instance, and they start at least a poll interval (`LIVE_POLL_MS`) apart, so
//! an instance serving the run lists of fifty orgs sends one query a poll interval where it sent
//! fifty. A caller always joins a read that starts after it asked: it sees every run event
//! written before it asked, as a read of its own would.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::domain::OrgSlug;
use crate::runs::{self, FirstPageRows, RunFilter};
use crate::service_error::ServiceError;
use crate::warehouse::{Warehouse, WarehouseError};

/// Orgs one read covers at most (up to 101 rows each); more wait for the next read.
const MAX_ORGS: usize = 100;

/// What one batch read found: the rows of its orgs' first pages, the filter they were read under
/// (the latest caller's window when callers left its ends to their defaults), and when the read
/// started (it found every run event written before then).
pub(super) type Read = (Arc<FirstPageRows>, RunFilter, Instant);

/// The first pages asked, by filter ([`runs::RunsQuery::batch_key`]).
pub(super) struct FirstPages {
    warehouse: Warehouse,
    /// Reads of one filter's pages start at least this far apart (the poll interval).
    gap: Duration,
    queues: Mutex<HashMap<String, Queue>>,
}

/// One filter's reads: the batches waiting (the first is read next), and whether a reader runs.
#[derive(Default)]
struct Queue {
    reading: bool,
    waiting: VecDeque<Batch>,
}

struct Batch {
    orgs: BTreeSet<OrgSlug>,
    filter: RunFilter,
    done: watch::Sender<Option<Result<Read, ServiceError>>>,
}

impl FirstPages {
    pub(super) fn new(warehouse: Warehouse, gap: Duration) -> Self {
        Self {
            warehouse,
            gap,
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// `org`'s first page rows under `filter` (whose batch key is `key`), from the next read
    /// of that filter's pages: it starts at once when none is in flight, else right after it.
    /// Waited for at most the warehouse's deadline, as a read of its own would be.
    pub(super) async fn rows(
        self: &Arc<Self>,
        org: &OrgSlug,
        key: &str,
        filter: RunFilter,
    ) -> Result<Read, ServiceError> {
        let mut done = {
            let mut queues = self.queues.lock().unwrap();
            let queue = queues.entry(key.to_string()).or_default();
            let room = queue
                .waiting
                .back()
                .is_some_and(|b| b.orgs.len() < MAX_ORGS || b.orgs.contains(org));
            if !room {
                queue.waiting.push_back(Batch {
                    orgs: BTreeSet::new(),
                    filter: filter.clone(),
                    done: watch::channel(None).0,
                });
            }
            let batch = queue.waiting.back_mut().expect("a batch waits");
            batch.orgs.insert(org.clone());
            // Callers share everything but a defaulted end of the window: the latest wins.
            if filter.until > batch.filter.until {
                batch.filter = filter;
            }
            let done = batch.done.subscribe();
            if !queue.reading {
                queue.reading = true;
                tokio::spawn(self.clone().read_all(key.to_string()));
            }
            done
        };
        // The read in flight, the gap and this caller's own read may outlast one BigQuery
        // deadline together: past it the caller is answered 503 (its read goes on for others).
        let read = done.wait_for(Option::is_some);
        let read = match self.warehouse.deadline() {
            Some(deadline) => tokio::time::timeout(deadline, read)
                .await
                .map_err(|_| ServiceError::Warehouse(WarehouseError::Timeout))?,
            None => read.await,
        };
        let read = read.map_err(|_| {
            ServiceError::Warehouse(WarehouseError::Decode(
                "the read of the run lists' first pages stopped".into(),
            ))
        })?;
        match read.as_ref().expect("waited for") {
            Ok((rows, filter, started)) => Ok((rows.clone(), filter.clone(), *started)),
            Err(e) => Err(super::unshared(e)),
        }
    }

    /// Reads the filter's waiting batches one after the other, a gap apart, until none waits
    /// once the gap after the last read has passed.
    async fn read_all(self: Arc<Self>, key: String) {
        let mut reader = Reader {
            pages: self.clone(),
            key: key.clone(),
            finished: false,
        };
        let mut last: Option<Instant> = None;
        loop {
            if let Some(last) = last {
                tokio::time::sleep_until(last + self.gap).await;
            }
            let batch = {
                let mut queues = self.queues.lock().unwrap();
                let queue = queues.get_mut(&key).expect("a reader's queue stays");
                match queue.waiting.pop_front() {
                    Some(batch) => batch,
                    None => {
                        queues.remove(&key);
                        reader.finished = true;
                        return;
                    }
                }
            };
            let started = Instant::now();
            last = Some(started);
            let orgs: Vec<OrgSlug> = batch.orgs.into_iter().collect();
            let read = runs::first_pages(&self.warehouse, &orgs, &batch.filter)
                .await
                .map(|rows| (Arc::new(rows), batch.filter, started));
            batch.done.send_replace(Some(read));
        }
    }
}

/// A reader that stops other than by finding nothing waiting (its task panicked or was
/// cancelled) takes its filter's queue with it: the callers waiting there are told the read
/// stopped, and the next caller starts a reader again.
struct Reader {
    pages: Arc<FirstPages>,
    key: String,
    finished: bool,
}

impl Drop for Reader {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut queues = self.pages.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.remove(&self.key);
    }
}
