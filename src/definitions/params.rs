//! Declared pipeline parameters and the validation of a trigger's values against them.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::warehouse::Param;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ParamType {
    #[serde(rename = "STRING")]
    String,
    #[serde(rename = "INT64")]
    Int64,
    #[serde(rename = "DATE")]
    Date,
    #[serde(rename = "BOOL")]
    Bool,
}

/// A parameter a pipeline declares.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamDecl {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// For STRING: the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Longest STRING parameter value.
pub const MAX_STRING_PARAM: usize = 1024;

impl ParamDecl {
    /// Checks the declaration itself (at catalog load).
    pub fn check(&self) -> Result<(), String> {
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err("name: 1-64 of [a-z0-9_], starting with a letter".into());
        }
        if self.regex.is_some() && self.kind != ParamType::String {
            return Err("regex: only for STRING parameters".into());
        }
        if let Some(r) = &self.regex {
            regex::Regex::new(r).map_err(|e| format!("regex: {e}"))?;
        }
        if self.required && self.default.is_some() {
            return Err("default: a required parameter has no default".into());
        }
        if let Some(d) = &self.default {
            self.coerce(d).map_err(|e| format!("default: {e}"))?;
        }
        Ok(())
    }

    fn coerce(&self, value: &Value) -> Result<ParamValue, String> {
        match (self.kind, value) {
            (ParamType::String, Value::String(s)) => {
                if s.chars().count() > MAX_STRING_PARAM {
                    return Err(format!("at most {MAX_STRING_PARAM} characters"));
                }
                if s.chars().any(|c| c == '\u{0}') {
                    return Err("contains a NUL character".into());
                }
                if let Some(r) = &self.regex {
                    let re = regex::Regex::new(&format!("^(?:{r})$")).map_err(|e| e.to_string())?;
                    if !re.is_match(s) {
                        return Err("does not match the declared pattern".into());
                    }
                }
                Ok(ParamValue::String(s.clone()))
            }
            (ParamType::Int64, Value::Number(n)) => n
                .as_i64()
                .map(ParamValue::Int64)
                .ok_or_else(|| "expected a 64-bit integer".into()),
            (ParamType::Date, Value::String(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(ParamValue::Date)
                .map_err(|_| "expected a date YYYY-MM-DD".into()),
            (ParamType::Bool, Value::Bool(b)) => Ok(ParamValue::Bool(*b)),
            (kind, _) => Err(format!("expected {kind:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    String(String),
    Int64(i64),
    Date(NaiveDate),
    Bool(bool),
}

/// A trigger's parameter that failed validation. The name is safe to show: it is declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {name}: {problem}")]
pub struct ParamError {
    pub name: String,
    pub problem: String,
}

/// A run's validated parameter values, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunParams(BTreeMap<String, ParamValue>);

impl RunParams {
    /// Every declared parameter gets its value or its default; required ones must be given;
    /// undeclared names are refused.
    pub fn validate(
        decls: &[ParamDecl],
        input: &serde_json::Map<String, Value>,
    ) -> Result<Self, ParamError> {
        for name in input.keys() {
            if !decls.iter().any(|d| &d.name == name) {
                let shown: String = name
                    .chars()
                    .take(64)
                    .filter(|c| c.is_ascii_graphic())
                    .collect();
                return Err(ParamError {
                    name: shown,
                    problem: "not declared by this pipeline".into(),
                });
            }
        }
        let mut values = BTreeMap::new();
        for decl in decls {
            let given = input.get(&decl.name).filter(|v| !v.is_null());
            let value = match (given, &decl.default) {
                (Some(v), _) => Some(v),
                (None, Some(d)) => Some(d),
                (None, None) if decl.required => {
                    return Err(ParamError {
                        name: decl.name.clone(),
                        problem: "required".into(),
                    });
                }
                (None, None) => None,
            };
            if let Some(v) = value {
                let coerced = decl.coerce(v).map_err(|problem| ParamError {
                    name: decl.name.clone(),
                    problem,
                })?;
                values.insert(decl.name.clone(), coerced);
            }
        }
        Ok(Self(values))
    }

    /// The query parameters for SQL that references `names` (BigQuery and the emulator both
    /// refuse parameters a statement does not use). Declared-but-unset ones are typed NULLs.
    pub fn to_params<'a>(
        &self,
        decls: &[ParamDecl],
        names: impl IntoIterator<Item = &'a String>,
        org_slug: &str,
    ) -> Vec<Param> {
        names
            .into_iter()
            .filter_map(|name| {
                if name == "org_slug" {
                    return Some(Param::string("org_slug", org_slug.to_string()));
                }
                let decl = decls.iter().find(|d| &d.name == name)?;
                let n = name.clone();
                Some(match (self.0.get(name), decl.kind) {
                    (Some(ParamValue::String(s)), _) => Param::string(n, s.clone()),
                    (Some(ParamValue::Int64(i)), _) => Param::int64(n, *i),
                    (Some(ParamValue::Date(d)), _) => Param::date(n, *d),
                    (Some(ParamValue::Bool(b)), _) => Param::bool(n, *b),
                    (None, ParamType::Int64) => Param::opt_int64(n, None),
                    (None, _) => Param::opt_string(n, None::<String>),
                })
            })
            .collect()
    }

    /// A parameter's value as text (for a query string), if set.
    pub fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| match v {
            ParamValue::String(s) => s.clone(),
            ParamValue::Int64(i) => i.to_string(),
            ParamValue::Date(d) => d.format("%Y-%m-%d").to_string(),
            ParamValue::Bool(b) => b.to_string(),
        })
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.0).unwrap_or(Value::Null)
    }
}
