//! The vocabulary of pipeline files, shared by the catalog that loads them (`pipelines`), the
//! step kinds that parse their own fields (`steps`) and the schedules they declare
//! (`schedules`): parse errors, what a step parser is given, a step's SQL, declared parameters
//! (`params`) and schedule specs (`schedule`). It depends on none of those three, so they do not
//! depend on each other through it.

pub mod params;
pub mod schedule;

use std::collections::BTreeSet;
use std::path::Path;

use crate::settings::Environment;
use crate::warehouse::sql::{META_DATASET_TOKEN, ORG_DATASET_TOKEN};

pub use params::{ParamDecl, ParamError, ParamType, RunParams};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    pub file: String,
    /// Empty for the top level of the file.
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.problem)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.problem)
        }
    }
}

impl std::error::Error for CatalogError {}

pub(crate) fn problem(
    file: &str,
    field: impl Into<String>,
    problem: impl Into<String>,
) -> CatalogError {
    CatalogError {
        file: file.to_string(),
        field: field.into(),
        problem: problem.into(),
    }
}

/// What step kinds get to know while they parse their own fields.
pub struct StepParse<'a> {
    pub file: &'a str,
    pub providers: &'a crate::integrations::Registry,
    pub field: String,
    pub sql_dir: &'a Path,
    pub environment: Environment,
    /// Names the step's SQL may use as `@name`: declared parameters and `org_slug`.
    pub known_params: BTreeSet<String>,
}

impl StepParse<'_> {
    pub fn error(&self, sub: &str, what: impl Into<String>) -> CatalogError {
        let field = if sub.is_empty() {
            self.field.clone()
        } else {
            format!("{}.{sub}", self.field)
        };
        problem(self.file, field, what)
    }

    /// A step's `max_bytes_billed`, checked (see [`crate::cost::cap::BytesCap`]).
    pub fn bytes_cap(
        &self,
        declared: Option<u64>,
    ) -> Result<Option<crate::cost::cap::BytesCap>, CatalogError> {
        declared
            .map(crate::cost::cap::BytesCap::parse)
            .transpose()
            .map_err(|e| self.error("max_bytes_billed", e))
    }

    /// Loads a SQL file named by a step: relative, under `pipelines/` of the SQL folder, using
    /// only declared parameters and the org dataset token.
    pub fn load_sql(&self, relative: &str) -> Result<PipelineSql, CatalogError> {
        let err = |what: &str| self.error("sql", format!("{relative}: {what}"));
        let rel = Path::new(relative);
        if rel.is_absolute()
            || !relative.starts_with("pipelines/")
            || !relative.ends_with(".sql")
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(err(
                "must be a .sql file under pipelines/ of the SQL folder",
            ));
        }
        let text = std::fs::read_to_string(self.sql_dir.join(rel))
            .map_err(|e| err(&format!("cannot read ({e})")))?;
        if text.contains(META_DATASET_TOKEN) {
            return Err(err("pipelines may not name the meta dataset"));
        }
        let params = referenced_params(&text);
        for name in &params {
            if !self.known_params.contains(name) {
                return Err(err(&format!("uses undeclared parameter @{name}")));
            }
        }
        Ok(PipelineSql {
            file: relative.to_string(),
            text,
            params,
        })
    }
}

/// A step's SQL as loaded: the file, its text, and the parameters it references.
#[derive(Debug, Clone)]
pub struct PipelineSql {
    pub file: String,
    pub text: String,
    pub params: BTreeSet<String>,
}

impl PipelineSql {
    pub fn is_read(&self) -> bool {
        let code: String = self
            .text
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        let first = code
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        first == "SELECT" || first == "WITH"
    }

    pub fn uses_org_dataset(&self) -> bool {
        self.text.contains(ORG_DATASET_TOKEN)
    }
}

/// `@name` identifiers in SQL, outside comments and string literals.
pub fn referenced_params(sql: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in sql.lines() {
        let code = line.split("--").next().unwrap_or("");
        let mut in_string: Option<char> = None;
        let chars: Vec<char> = code.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match in_string {
                Some(q) if c == q => in_string = None,
                Some(_) => {}
                None if c == '\'' || c == '"' => in_string = Some(c),
                None if c == '@'
                    && chars
                        .get(i + 1)
                        .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_') =>
                {
                    let name: String = chars[i + 1..]
                        .iter()
                        .take_while(|n| n.is_ascii_alphanumeric() || **n == '_')
                        .collect();
                    i += name.len();
                    out.insert(name);
                }
                None => {}
            }
            i += 1;
        }
    }
    out
}

/// Fields every step takes, whatever its kind.
pub const COMMON_STEP_FIELDS: &[&str] = &[
    "id",
    "kind",
    "depends_on",
    "timeout_seconds",
    "retry",
    "on_failure",
];
