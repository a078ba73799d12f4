//! What is wrong with a request, said so the caller can fix it: a list of problems, each naming
//! the field, the problem and the accepted form. Built only from our own field names and
//! accepted forms, never from the caller's values (which may be secrets) or upstream text.

use serde::Serialize;

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FieldProblem {
    /// Where: a query parameter, or a body field as a dotted path (`parameters.day`).
    pub field: String,
    pub problem: String,
    /// What would be accepted, when that can be said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub accepted: String,
}

impl FieldProblem {
    pub fn new(field: &str, problem: &str, accepted: &str) -> Self {
        Self {
            field: field.to_string(),
            problem: problem.to_string(),
            accepted: accepted.to_string(),
        }
    }
}

/// Reads a serde error message (from our own types) into a problem at `path` (empty: top
/// level). Only names from our types are kept: a value quoted in the message is never copied.
pub fn from_serde(path: &str, message: &str) -> FieldProblem {
    // serde_json ends its messages with the position; the position is no help here.
    let message = message.split(" at line ").next().unwrap_or_default();
    let join = |name: &str| {
        if path.is_empty() || path == "." {
            name.to_string()
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path.to_string() // the path already ends at the unknown field
        } else {
            format!("{path}.{name}")
        }
    };
    let named = |rest: &str| rest.split('`').nth(1).map(str::to_string);
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let name = named(rest).unwrap_or_default();
        let accepted = rest
            .split_once(", expected ")
            .map(|(_, e)| e.replace("one of ", "").replace('`', ""))
            .unwrap_or_default();
        let accepted = if accepted.is_empty() || accepted.starts_with("there are no fields") {
            "no fields".to_string()
        } else {
            accepted
        };
        return FieldProblem::new(&join(&name), "unknown field", &accepted);
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let name = named(rest).unwrap_or_default();
        return FieldProblem::new(&join(&name), "required", "");
    }
    let field = if path.is_empty() || path == "." {
        "body"
    } else {
        path
    };
    for (prefix, problem) in [
        ("invalid type: ", "wrong type"),
        ("invalid value: ", "invalid value"),
        ("invalid length ", "wrong number of items"),
        ("unknown variant ", "not one of the accepted values"),
    ] {
        if message.starts_with(prefix) {
            let accepted = message
                .rsplit_once("expected ")
                .map(|(_, e)| e.replace("one of ", "").replace('`', ""))
                .unwrap_or_default();
            return FieldProblem::new(field, problem, &accepted);
        }
    }
    FieldProblem::new(field, "not valid JSON", "a JSON object")
}

/// Parses a JSON body into `T`, or says which field is wrong and how.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FieldProblem> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => match de.end() {
            Ok(()) => Ok(value),
            Err(_) => Err(FieldProblem::new(
                "body",
                "trailing data after the JSON value",
                "one JSON object",
            )),
        },
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(FieldProblem::new("body", "not valid JSON", "a JSON object"));
            }
            Err(from_serde(&path, &inner.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limits {
        daily_limit: i64,
        monthly_limit: i64,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Trigger {
        #[serde(default)]
        parameters: serde_json::Map<String, serde_json::Value>,
    }

    #[test]
    fn a_missing_field_is_named_as_required() {
        let e = parse_json::<Limits>(br#"{"daily_limit": 5}"#).unwrap_err();
        assert_eq!(e, FieldProblem::new("monthly_limit", "required", ""));
    }

    #[test]
    fn an_unknown_field_names_the_accepted_ones() {
        let e = parse_json::<Trigger>(br#"{"day": "2026-11-01"}"#).unwrap_err();
        assert_eq!(e, FieldProblem::new("day", "unknown field", "parameters"));
    }

    #[test]
    fn a_wrong_type_says_what_was_expected_without_the_value() {
        let e = parse_json::<Limits>(br#"{"daily_limit": "qk_secret", "monthly_limit": 1}"#)
            .unwrap_err();
        assert_eq!(e.field, "daily_limit");
        assert_eq!(e.problem, "wrong type");
        assert_eq!(e.accepted, "i64");
        assert!(!format!("{e:?}").contains("qk_secret"));
    }

    #[test]
    fn broken_json_is_said_so() {
        let e = parse_json::<Limits>(b"{nope").unwrap_err();
        assert_eq!(
            e,
            FieldProblem::new("body", "not valid JSON", "a JSON object")
        );
    }

    #[test]
    fn an_unknown_query_parameter_is_named_with_the_accepted_ones() {
        let e = from_serde(
            "",
            "unknown field `pipeline`, expected one of `status`, `pipeline_id`",
        );
        assert_eq!(
            e,
            FieldProblem::new("pipeline", "unknown field", "status, pipeline_id")
        );
    }
}
