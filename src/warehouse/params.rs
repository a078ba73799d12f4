//! Named, typed query parameters: the only way a value reaches a statement.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;

/// One `@name` parameter with its BigQuery type. Arrays are bound whole and read with
/// `UNNEST(@name)` in SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    name: Cow<'static, str>,
    value: Value,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    String(Option<String>),
    Int64(Option<i64>),
    Bool(Option<bool>),
    Date(Option<NaiveDate>),
    Timestamp(Option<DateTime<Utc>>),
    StringArray(Vec<String>),
}

impl Param {
    pub fn string(name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: Value::String(Some(value.into())),
        }
    }

    pub fn opt_string(
        name: impl Into<Cow<'static, str>>,
        value: Option<impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            value: Value::String(value.map(Into::into)),
        }
    }

    pub fn int64(name: impl Into<Cow<'static, str>>, value: i64) -> Self {
        Self {
            name: name.into(),
            value: Value::Int64(Some(value)),
        }
    }

    pub fn opt_int64(name: impl Into<Cow<'static, str>>, value: Option<i64>) -> Self {
        Self {
            name: name.into(),
            value: Value::Int64(value),
        }
    }

    pub fn bool(name: impl Into<Cow<'static, str>>, value: bool) -> Self {
        Self {
            name: name.into(),
            value: Value::Bool(Some(value)),
        }
    }

    pub fn date(name: impl Into<Cow<'static, str>>, value: NaiveDate) -> Self {
        Self {
            name: name.into(),
            value: Value::Date(Some(value)),
        }
    }

    pub fn timestamp(name: impl Into<Cow<'static, str>>, value: DateTime<Utc>) -> Self {
        Self {
            name: name.into(),
            value: Value::Timestamp(Some(value)),
        }
    }

    pub fn opt_timestamp(name: impl Into<Cow<'static, str>>, value: Option<DateTime<Utc>>) -> Self {
        Self {
            name: name.into(),
            value: Value::Timestamp(value),
        }
    }

    pub fn string_array(name: impl Into<Cow<'static, str>>, values: Vec<String>) -> Self {
        Self {
            name: name.into(),
            value: Value::StringArray(values),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn to_bigquery(&self) -> QueryParameter {
        let scalar = |t: &str| QueryParameterType {
            r#type: t.to_string(),
            array_type: None,
            struct_types: None,
        };
        let value = |v: Option<String>| QueryParameterValue {
            array_values: None,
            struct_values: None,
            value: v,
        };
        let (parameter_type, parameter_value) = match &self.value {
            Value::String(v) => (scalar("STRING"), value(v.clone())),
            Value::Int64(v) => (scalar("INT64"), value(v.map(|n| n.to_string()))),
            Value::Bool(v) => (scalar("BOOL"), value(v.map(|b| b.to_string()))),
            Value::Date(v) => (
                scalar("DATE"),
                value(v.map(|d| d.format("%Y-%m-%d").to_string())),
            ),
            Value::Timestamp(v) => (
                scalar("TIMESTAMP"),
                value(v.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))),
            ),
            Value::StringArray(items) => (
                QueryParameterType {
                    r#type: "ARRAY".to_string(),
                    array_type: Some(Box::new(scalar("STRING"))),
                    struct_types: None,
                },
                QueryParameterValue {
                    array_values: Some(items.iter().map(|s| value(Some(s.clone()))).collect()),
                    struct_values: None,
                    value: None,
                },
            ),
        };
        QueryParameter {
            name: Some(self.name.to_string()),
            parameter_type: Some(parameter_type),
            parameter_value: Some(parameter_value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_parameter_carries_its_value_verbatim_outside_the_sql() {
        let p = Param::string("org_slug", "x'; DROP TABLE t; --").to_bigquery();
        assert_eq!(p.name.as_deref(), Some("org_slug"));
        assert_eq!(p.parameter_type.unwrap().r#type, "STRING");
        assert_eq!(
            p.parameter_value.unwrap().value.as_deref(),
            Some("x'; DROP TABLE t; --")
        );
    }

    #[test]
    fn arrays_are_typed_arrays_of_strings() {
        let p = Param::string_array("ids", vec!["a".into(), "b".into()]).to_bigquery();
        let t = p.parameter_type.unwrap();
        assert_eq!(t.r#type, "ARRAY");
        assert_eq!(t.array_type.unwrap().r#type, "STRING");
        let values: Vec<_> = p
            .parameter_value
            .unwrap()
            .array_values
            .unwrap()
            .into_iter()
            .map(|v| v.value.unwrap())
            .collect();
        assert_eq!(values, vec!["a", "b"]);
    }

    #[test]
    fn timestamps_are_sent_in_utc_with_microseconds() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T10:00:00.123456+02:00")
            .unwrap()
            .with_timezone(&Utc);
        let p = Param::timestamp("at", t).to_bigquery();
        assert_eq!(
            p.parameter_value.unwrap().value.as_deref(),
            Some("2026-11-22T08:00:00.123456Z")
        );
    }

    #[test]
    fn a_null_parameter_keeps_its_type() {
        let p = Param::opt_int64("n", None).to_bigquery();
        assert_eq!(p.parameter_type.unwrap().r#type, "INT64");
        assert_eq!(p.parameter_value.unwrap().value, None);
    }
}
