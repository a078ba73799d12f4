//! Turns BigQuery's `{f: [{v: ...}]}` rows into serde values shaped by the result schema, so each
//! caller deserializes into its own typed struct.
//!
//! Numbers arrive as strings and are parsed by column type. TIMESTAMP columns are requested as
//! int64 microseconds (`useInt64Timestamp`) where the call can ask for it (`jobs.query`), and
//! come as decimal seconds (`1.7953416001234E9`) from `getQueryResults`, whose format options
//! cannot be sent: both read exactly as `i64` microseconds.

use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_row::TableRow;
use serde_json::{Map, Value};

/// A TIMESTAMP column read as `i64` microseconds, as a time (`None` stays `None`).
pub fn from_micros(micros: Option<i64>) -> Option<chrono::DateTime<chrono::Utc>> {
    micros.and_then(chrono::DateTime::from_timestamp_micros)
}

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

/// Decimal seconds (`1795341600.123456`, `1.795341600123456E9`, `-1.5E-1`) as exact
/// microseconds (digits past the sixth decimal are dropped).
fn seconds_to_micros(text: &str) -> Option<i64> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // All digits, with the decimal point moved by the exponent plus 6 (seconds to micros).
    let digits: String = format!("{whole}{fraction}");
    let point = i32::try_from(whole.len()).ok()? + exponent + 6;
    let integer: String = if point <= 0 {
        "0".into()
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        digits[..point as usize].to_string()
    };
    let value: i64 = integer.parse().ok()?;
    Some(if negative { -value } else { value })
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
        FieldType::Integer | FieldType::Int64 => {
            let text = as_text(field, &raw)?;
            text.parse::<i64>()
                .map(Value::from)
                .map_err(|_| problem(field, "expected an integer"))
        }
        FieldType::Timestamp => {
            let text = as_text(field, &raw)?;
            text.parse::<i64>()
                .ok()
                .or_else(|| seconds_to_micros(&text))
                .map(Value::from)
                .ok_or_else(|| problem(field, "expected int64 microseconds or decimal seconds"))
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
    fn timestamps_read_the_same_as_int64_micros_or_decimal_seconds() {
        use super::seconds_to_micros;
        assert_eq!(
            seconds_to_micros("1.795341600123456E9"),
            Some(1_795_341_600_123_456)
        );
        assert_eq!(
            seconds_to_micros("1795341600.123456"),
            Some(1_795_341_600_123_456)
        );
        assert_eq!(
            seconds_to_micros("1.7953416E9"),
            Some(1_795_341_600_000_000)
        );
        assert_eq!(seconds_to_micros("-1.5E-1"), Some(-150_000));
        assert_eq!(seconds_to_micros("0"), Some(0));
        assert_eq!(
            seconds_to_micros("1.0000001"),
            Some(1_000_000),
            "past micros dropped"
        );
        for bad in ["", ".", "abc", "1.2.3", "1e", "1x5"] {
            assert_eq!(seconds_to_micros(bad), None, "{bad:?}");
        }
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
