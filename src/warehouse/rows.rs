//! Turns BigQuery's `{f: [{v: ...}]}` rows into serde values shaped by the result schema, so each
//! caller deserializes into its own typed struct.
//!
//! Numbers arrive as strings and are parsed by column type. TIMESTAMP columns are requested as
//! int64 microseconds (`useInt64Timestamp`), which the emulator and BigQuery both honour, and are
//! read as `i64`.

use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_row::TableRow;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
#[error("column {column}: {problem}")]
pub struct DecodeError {
    pub column: String,
    pub problem: String,
}

pub fn decode_rows(
    fields: &[TableFieldSchema],
    rows: &[TableRow],
) -> Result<Vec<Value>, DecodeError> {
    rows.iter()
        .map(|row| {
            let cells = row.columns.as_deref().unwrap_or_default();
            decode_record(
                fields,
                cells.iter().map(|c| c.value.clone().unwrap_or(Value::Null)),
            )
        })
        .collect()
}

fn decode_record(
    fields: &[TableFieldSchema],
    cells: impl Iterator<Item = Value>,
) -> Result<Value, DecodeError> {
    let mut object = Map::with_capacity(fields.len());
    let mut cells = cells;
    for field in fields {
        let raw = cells.next().unwrap_or(Value::Null);
        object.insert(field.name.clone(), decode_field(field, raw)?);
    }
    Ok(Value::Object(object))
}

fn decode_field(field: &TableFieldSchema, raw: Value) -> Result<Value, DecodeError> {
    if field.mode.as_deref() == Some("REPEATED") {
        let items = match raw {
            Value::Null => Vec::new(),
            Value::Array(items) => items,
            other => return Err(problem(field, format!("expected an array, got {other}"))),
        };
        return items
            .into_iter()
            .map(|item| {
                let inner = match item {
                    Value::Object(mut o) => o.remove("v").unwrap_or(Value::Null),
                    other => other,
                };
                decode_scalar(field, inner)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    decode_scalar(field, raw)
}

fn decode_scalar(field: &TableFieldSchema, raw: Value) -> Result<Value, DecodeError> {
    if raw.is_null() {
        return Ok(Value::Null);
    }
    match field.r#type {
        FieldType::Record | FieldType::Struct => {
            let sub = field.fields.as_deref().unwrap_or_default();
            let cells = match raw {
                Value::Object(mut o) => match o.remove("f") {
                    Some(Value::Array(cells)) => cells,
                    _ => return Err(problem(field, "record without cells")),
                },
                _ => return Err(problem(field, "expected a record")),
            };
            decode_record(
                sub,
                cells.into_iter().map(|c| match c {
                    Value::Object(mut o) => o.remove("v").unwrap_or(Value::Null),
                    other => other,
                }),
            )
        }
        FieldType::Integer | FieldType::Int64 | FieldType::Timestamp => {
            let text = as_text(field, &raw)?;
            text.parse::<i64>()
                .map(Value::from)
                .map_err(|_| problem(field, "expected an integer"))
        }
        FieldType::Float | FieldType::Float64 => {
            let text = as_text(field, &raw)?;
            text.parse::<f64>()
                .map(Value::from)
                .map_err(|_| problem(field, "expected a number"))
        }
        FieldType::Boolean | FieldType::Bool => {
            match as_text(field, &raw)?.to_ascii_lowercase().as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(problem(field, "expected a boolean")),
            }
        }
        _ => Ok(Value::String(as_text(field, &raw)?)),
    }
}

fn as_text(field: &TableFieldSchema, raw: &Value) -> Result<String, DecodeError> {
    match raw {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(problem(field, "expected a scalar")),
    }
}

fn problem(field: &TableFieldSchema, problem: impl Into<String>) -> DecodeError {
    DecodeError {
        column: field.name.clone(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Vec<TableFieldSchema> {
        serde_json::from_value(v).unwrap()
    }

    fn rows(v: Value) -> Vec<TableRow> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn scalars_are_typed_by_the_schema() {
        let f = fields(json!([
            {"name": "s", "type": "STRING"},
            {"name": "n", "type": "INTEGER"},
            {"name": "t", "type": "TIMESTAMP"},
            {"name": "x", "type": "FLOAT"},
            {"name": "b", "type": "BOOLEAN"},
            {"name": "d", "type": "DATE"},
            {"name": "z", "type": "INT64"}
        ]));
        let r = rows(json!([{"f": [
            {"v": "o1"}, {"v": "42"}, {"v": "1795341600123456"}, {"v": "1.5"},
            {"v": "true"}, {"v": "2026-11-22"}, {"v": null}
        ]}]));
        assert_eq!(
            decode_rows(&f, &r).unwrap(),
            vec![
                json!({"s": "o1", "n": 42, "t": 1795341600123456i64, "x": 1.5, "b": true,
                        "d": "2026-11-22", "z": null})
            ]
        );
    }

    #[test]
    fn repeated_and_nested_fields_are_unwrapped() {
        let f = fields(json!([
            {"name": "ids", "type": "STRING", "mode": "REPEATED"},
            {"name": "r", "type": "RECORD", "fields": [{"name": "k", "type": "INTEGER"}]}
        ]));
        let r = rows(json!([{"f": [
            {"v": [{"v": "a"}, {"v": "b"}]},
            {"v": {"f": [{"v": "7"}]}}
        ]}]));
        assert_eq!(
            decode_rows(&f, &r).unwrap(),
            vec![json!({"ids": ["a", "b"], "r": {"k": 7}})]
        );
    }

    #[test]
    fn a_malformed_integer_is_an_error_naming_the_column() {
        let f = fields(json!([{"name": "n", "type": "INTEGER"}]));
        let r = rows(json!([{"f": [{"v": "forty"}]}]));
        let err = decode_rows(&f, &r).unwrap_err();
        assert_eq!(err.column, "n");
    }
}
