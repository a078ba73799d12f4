//! The pipeline catalog: YAML definitions under `pipelines/` (the id is the file's path without
//! `.yaml`, e.g. `genai/usage_rollup`), loaded and validated once at start-up. Any problem stops
//! start-up with a message naming the file and the field.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value as Yaml};

use crate::definitions::schedule::{ScheduleDecl, Spec};
use crate::definitions::{
    COMMON_STEP_FIELDS, CatalogError, ParamDecl, RunParams, StepParse, problem,
};
use crate::settings::Environment;
use crate::steps::{self, StepAction};

/// Largest number of steps in one pipeline.
pub const MAX_STEPS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The run fails and no further step starts (the default).
    Stop,
    /// The failure is tolerated: dependents run, the run can still succeed.
    Continue,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "RetryPolicy::default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "RetryPolicy::default_base")]
    pub backoff_base_ms: u64,
    #[serde(default = "RetryPolicy::default_max")]
    pub backoff_max_ms: u64,
    #[serde(default = "RetryPolicy::default_jitter")]
    pub jitter: bool,
}

impl RetryPolicy {
    fn default_attempts() -> u32 {
        1
    }
    fn default_base() -> u64 {
        500
    }
    fn default_max() -> u64 {
        30_000
    }
    fn default_jitter() -> bool {
        true
    }

    /// Delay before attempt `attempt` (2, 3, ...): base * 2^(attempt-2), capped, with up to
    /// half of it as random jitter.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(2).min(20);
        let raw = self
            .backoff_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.backoff_max_ms);
        let jitter = if self.jitter && raw > 1 {
            let mut byte = [0u8; 2];
            let _ = getrandom::getrandom(&mut byte);
            u64::from(u16::from_le_bytes(byte)) % (raw / 2 + 1)
        } else {
            0
        };
        Duration::from_millis(raw - jitter)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            jitter: true,
        }
    }
}

/// One validated step.
#[derive(Debug)]
pub struct Step {
    pub id: String,
    pub kind: String,
    pub depends_on: Vec<String>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub on_failure: OnFailure,
    pub action: Box<dyn StepAction>,
}

/// One validated pipeline.
#[derive(Debug)]
pub struct Pipeline {
    pub id: String,
    pub description: String,
    pub parameters: Vec<ParamDecl>,
    pub timeout: Duration,
    /// A run still running this long after it started is alerted `run.deadline_passed`.
    pub deadline: Option<Duration>,
    pub steps: Vec<Step>,
    /// Schedules an org may enable for this pipeline.
    pub schedules: Vec<Spec>,
}

impl Pipeline {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The step ids in declaration order (what `runs::in_run_order` orders skipped steps by).
    pub fn step_ids(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.id.clone()).collect()
    }

    /// The deadline of a run of this pipeline: its schedule's (`pipeline_id/name`), when the
    /// run is a tick of a schedule that declares one, else the pipeline's.
    pub fn deadline_for(&self, schedule_id: Option<&str>) -> Option<Duration> {
        schedule_id
            .and_then(|id| id.rsplit_once('/'))
            .filter(|(pipeline, _)| *pipeline == self.id)
            .and_then(|(_, name)| self.schedules.iter().find(|s| s.name == name))
            .and_then(|s| s.deadline)
            .or(self.deadline)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    description: String,
    #[serde(default = "default_pipeline_timeout")]
    timeout_seconds: u64,
    #[serde(default)]
    deadline_seconds: Option<u64>,
    #[serde(default)]
    parameters: Vec<ParamDecl>,
    steps: Vec<Mapping>,
    #[serde(default)]
    schedules: Vec<ScheduleDecl>,
}

fn default_pipeline_timeout() -> u64 {
    3600
}

/// Every pipeline, by id.
#[derive(Debug, Default)]
pub struct Catalog {
    pipelines: BTreeMap<String, Arc<Pipeline>>,
}

impl Catalog {
    pub fn get(&self, id: &str) -> Option<Arc<Pipeline>> {
        self.pipelines.get(id).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Pipeline>> {
        self.pipelines.values()
    }

    pub fn len(&self) -> usize {
        self.pipelines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pipelines.is_empty()
    }

    /// Loads every `*.yaml` under `dir` (recursively). A missing folder is an empty catalog.
    pub fn load(
        dir: &Path,
        sql_dir: &Path,
        providers: &crate::integrations::Registry,
        environment: Environment,
    ) -> Result<Self, CatalogError> {
        let mut files = Vec::new();
        if dir.exists() {
            collect_yaml(dir, &mut files)
                .map_err(|e| problem(&dir.display().to_string(), "", e.to_string()))?;
        }
        files.sort();
        let mut pipelines = BTreeMap::new();
        for path in files {
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let id = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect::<Vec<_>>()
                .join("/");
            let shown = format!("{}", path.display());
            if !valid_pipeline_id(&id) {
                return Err(problem(&shown, "id", "path segments must be [a-z0-9_-]"));
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| problem(&shown, "", format!("cannot read ({e})")))?;
            let pipeline = parse_pipeline(&id, &shown, &text, sql_dir, providers, environment)?;
            pipelines.insert(id, Arc::new(pipeline));
        }
        Ok(Self { pipelines })
    }
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

pub fn valid_pipeline_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
}

fn valid_step_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub fn parse_pipeline(
    id: &str,
    file: &str,
    text: &str,
    sql_dir: &Path,
    providers: &crate::integrations::Registry,
    environment: Environment,
) -> Result<Pipeline, CatalogError> {
    let raw: PipelineFile = serde_yaml_ng::from_str(text).map_err(|e| {
        // serde_yaml puts the field first ("parameters[0].type: unknown variant ..."): said
        // once, as the field.
        let text = e.to_string();
        match text.split_once(": ") {
            Some((field, what)) if !field.contains(' ') && !field.is_empty() => {
                problem(file, field, what)
            }
            _ => problem(file, "", text.trim_start_matches(": ")),
        }
    })?;
    if raw.timeout_seconds == 0 || raw.timeout_seconds > 24 * 3600 {
        return Err(problem(file, "timeout_seconds", "must be 1-86400"));
    }
    if raw
        .deadline_seconds
        .is_some_and(|d| d == 0 || d >= raw.timeout_seconds)
    {
        return Err(problem(
            file,
            "deadline_seconds",
            "must be at least 1 and less than timeout_seconds (a run past its timeout ends TIMED_OUT)",
        ));
    }
    let mut known_params = BTreeSet::from(["org_slug".to_string()]);
    for (i, decl) in raw.parameters.iter().enumerate() {
        decl.check()
            .map_err(|e| problem(file, format!("parameters[{i}]"), e))?;
        if !known_params.insert(decl.name.clone()) {
            return Err(problem(
                file,
                format!("parameters[{i}].name"),
                format!("duplicate or reserved name {}", decl.name),
            ));
        }
    }
    if raw.steps.is_empty() || raw.steps.len() > MAX_STEPS {
        return Err(problem(file, "steps", format!("1 to {MAX_STEPS} steps")));
    }
    let mut steps = Vec::with_capacity(raw.steps.len());
    for (i, mapping) in raw.steps.into_iter().enumerate() {
        let field = format!("steps[{i}]");
        let ctx = StepParse {
            file,
            providers,
            field: field.clone(),
            sql_dir,
            environment,
            known_params: known_params.clone(),
        };
        steps.push(parse_step(mapping, &ctx)?);
    }
    let mut seen = BTreeSet::new();
    for (i, step) in steps.iter().enumerate() {
        if !seen.insert(step.id.clone()) {
            return Err(problem(
                file,
                format!("steps[{i}].id"),
                format!("duplicate step id {}", step.id),
            ));
        }
    }
    for (i, step) in steps.iter().enumerate() {
        for dep in &step.depends_on {
            if !seen.contains(dep) {
                return Err(problem(
                    file,
                    format!("steps[{i}].depends_on"),
                    format!("unknown step {dep}"),
                ));
            }
        }
    }
    if let Some(cycle_at) = find_cycle(&steps) {
        return Err(problem(
            file,
            "steps",
            format!("dependency cycle through step {cycle_at}"),
        ));
    }
    let mut schedules: Vec<Spec> = Vec::new();
    for (i, decl) in raw.schedules.into_iter().enumerate() {
        let spec = Spec::parse(decl)
            .map_err(|e| problem(file, format!("schedules[{i}].{}", e.field), e.problem))?;
        if spec
            .deadline
            .is_some_and(|d| d.as_secs() >= raw.timeout_seconds)
        {
            return Err(problem(
                file,
                format!("schedules[{i}].deadline_seconds"),
                "must be less than the pipeline's timeout_seconds (a run past its timeout ends TIMED_OUT)",
            ));
        }
        if schedules.iter().any(|s| s.name == spec.name) {
            return Err(problem(
                file,
                format!("schedules[{i}].name"),
                format!("duplicate schedule {}", spec.name),
            ));
        }
        // What its templates render must be valid parameters of the pipeline.
        let sample = spec.render(chrono::Utc::now(), &Default::default());
        if let Err(e) = RunParams::validate(&raw.parameters, &sample) {
            return Err(problem(
                file,
                format!("schedules[{i}].parameters.{}", e.name),
                e.problem,
            ));
        }
        schedules.push(spec);
    }
    Ok(Pipeline {
        id: id.to_string(),
        description: raw.description,
        parameters: raw.parameters,
        timeout: Duration::from_secs(raw.timeout_seconds),
        deadline: raw.deadline_seconds.map(Duration::from_secs),
        steps,
        schedules,
    })
}

fn parse_step(mut mapping: Mapping, ctx: &StepParse<'_>) -> Result<Step, CatalogError> {
    let take = |m: &mut Mapping, key: &str| m.remove(Yaml::String(key.to_string()));
    let string = |v: Option<Yaml>, key: &str| -> Result<Option<String>, CatalogError> {
        match v {
            None => Ok(None),
            Some(Yaml::String(s)) => Ok(Some(s)),
            Some(_) => Err(ctx.error(key, "must be a string")),
        }
    };
    let id = string(take(&mut mapping, "id"), "id")?.ok_or_else(|| ctx.error("id", "missing"))?;
    if !valid_step_id(&id) {
        return Err(ctx.error("id", "1-64 of [a-z0-9_-]"));
    }
    let kind =
        string(take(&mut mapping, "kind"), "kind")?.ok_or_else(|| ctx.error("kind", "missing"))?;
    let depends_on: Vec<String> = match take(&mut mapping, "depends_on") {
        None => Vec::new(),
        Some(v) => serde_yaml_ng::from_value(v)
            .map_err(|_| ctx.error("depends_on", "a list of step ids"))?,
    };
    let timeout_seconds: u64 = match take(&mut mapping, "timeout_seconds") {
        None => 600,
        Some(v) => {
            serde_yaml_ng::from_value(v).map_err(|_| ctx.error("timeout_seconds", "an integer"))?
        }
    };
    if timeout_seconds == 0 || timeout_seconds > 24 * 3600 {
        return Err(ctx.error("timeout_seconds", "must be 1-86400"));
    }
    let retry: RetryPolicy = match take(&mut mapping, "retry") {
        None => RetryPolicy::default(),
        Some(v) => serde_yaml_ng::from_value(v).map_err(|e| ctx.error("retry", e.to_string()))?,
    };
    if !(1..=10).contains(&retry.max_attempts) || retry.backoff_base_ms > retry.backoff_max_ms {
        return Err(ctx.error(
            "retry",
            "max_attempts 1-10 and backoff_base_ms <= backoff_max_ms",
        ));
    }
    let on_failure: OnFailure = match take(&mut mapping, "on_failure") {
        None => OnFailure::Stop,
        Some(v) => {
            serde_yaml_ng::from_value(v).map_err(|_| ctx.error("on_failure", "stop or continue"))?
        }
    };
    debug_assert!(COMMON_STEP_FIELDS.len() == 6);
    let action = steps::parse(&kind, mapping, ctx)?;
    Ok(Step {
        id,
        kind,
        depends_on,
        timeout: Duration::from_secs(timeout_seconds),
        retry,
        on_failure,
        action,
    })
}

/// A step on a dependency cycle, if there is one (depth-first search).
fn find_cycle(steps: &[Step]) -> Option<String> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    // 0 unvisited, 1 on the stack, 2 done
    let mut state = vec![0u8; steps.len()];
    fn visit(
        i: usize,
        steps: &[Step],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
    ) -> Option<String> {
        state[i] = 1;
        for dep in &steps[i].depends_on {
            let j = index[dep.as_str()];
            match state[j] {
                1 => return Some(steps[j].id.clone()),
                0 => {
                    if let Some(c) = visit(j, steps, index, state) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        state[i] = 2;
        None
    }
    (0..steps.len()).find_map(|i| {
        if state[i] == 0 {
            visit(i, steps, &index, &mut state)
        } else {
            None
        }
    })
}

/// A pipeline as the catalog route shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PipelineView {
    pub id: String,
    pub description: String,
    pub parameters: Vec<ParamDecl>,
    pub timeout_seconds: u64,
    /// A run still running this long after it started is alerted (`run.deadline_passed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_seconds: Option<u64>,
    pub steps: Vec<StepView>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StepView {
    pub id: String,
    pub kind: String,
    pub depends_on: Vec<String>,
    pub timeout_seconds: u64,
    pub on_failure: OnFailure,
    pub max_attempts: u32,
}

impl From<&Pipeline> for PipelineView {
    fn from(p: &Pipeline) -> Self {
        PipelineView {
            id: p.id.clone(),
            description: p.description.clone(),
            parameters: p.parameters.clone(),
            timeout_seconds: p.timeout.as_secs(),
            deadline_seconds: p.deadline.map(|d| d.as_secs()),
            steps: p
                .steps
                .iter()
                .map(|s| StepView {
                    id: s.id.clone(),
                    kind: s.kind.clone(),
                    depends_on: s.depends_on.clone(),
                    timeout_seconds: s.timeout.as_secs(),
                    on_failure: s.on_failure,
                    max_attempts: s.retry.max_attempts,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
