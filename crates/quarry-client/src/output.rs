//! What the client prints: aligned tables and `field: value` blocks for people, the service's
//! JSON unchanged for scripts (`--output json`).

use serde_json::Value;

use super::api::inline;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A column: its header and the field it shows (`a.b` reaches into an object).
pub struct Column {
    pub header: &'static str,
    pub field: &'static str,
}

pub const fn col(header: &'static str, field: &'static str) -> Column {
    Column { header, field }
}

fn lookup<'a>(row: &'a Value, field: &str) -> &'a Value {
    field
        .split('.')
        .fold(row, |v, part| v.get(part).unwrap_or(&Value::Null))
}

/// A cell: durations in milliseconds read as seconds, bytes in binary units, dollars with
/// cents, lists joined, absent as `-`.
fn cell(row: &Value, field: &str) -> String {
    let v = lookup(row, field);
    match v {
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) => items.iter().map(inline).collect::<Vec<_>>().join(","),
        Value::Number(n) if field.ends_with("_ms") => {
            n.as_f64().map(format_ms).unwrap_or_else(|| n.to_string())
        }
        Value::Number(n) if field.contains("bytes") => n
            .as_u64()
            .map(format_bytes)
            .unwrap_or_else(|| n.to_string()),
        Value::Number(n) if field.ends_with("_usd") => {
            n.as_f64().map(format_usd).unwrap_or_else(|| n.to_string())
        }
        Value::String(s) if looks_like_timestamp(s) => short_time(s),
        other => inline(other),
    }
}

/// `1234.5` ms as `1.2 s`; under a second as `123 ms`.
pub fn format_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 120_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{:.1} min", ms / 60_000.0)
    }
}

/// An estimated cost: `6.25` as `$6.25`; more than nothing but under a cent as `<$0.01`.
pub fn format_usd(usd: f64) -> String {
    if usd > 0.0 && usd < 0.01 {
        "<$0.01".to_string()
    } else {
        format!("${usd:.2}")
    }
}

/// `1099511627776` as `1.0 TiB`; under a KiB as `512 B`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn looks_like_timestamp(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T') && s.ends_with('Z')
}

/// `2026-11-23T21:24:31.504470Z` as `2026-11-23 21:24:31`.
fn short_time(s: &str) -> String {
    format!("{} {}", &s[..10], &s[11..19])
}

/// Rows as an aligned table with a header line.
pub fn table(rows: &[Value], columns: &[Column]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r, c.field)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        let mut out = String::new();
        for (i, v) in values.iter().enumerate() {
            if i + 1 == values.len() {
                out.push_str(v);
            } else {
                out.push_str(&format!("{v:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(columns.iter().map(|c| c.header).collect());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `field: value` lines, in the order given.
pub fn fields(value: &Value, columns: &[Column]) -> String {
    let width = columns.iter().map(|c| c.header.len()).max().unwrap_or(0);
    columns
        .iter()
        .map(|c| {
            format!(
                "{:<width$}  {}\n",
                format!("{}:", c.header),
                cell(value, c.field),
                width = width + 1
            )
        })
        .collect()
}

/// The service's JSON, pretty, for scripts.
pub fn json(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("JSON values serialize") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_aligns_its_columns_and_shows_absent_values_as_a_dash() {
        let rows = vec![
            json!({"id": "a", "status": "SUCCEEDED", "duration_ms": 113}),
            json!({"id": "bbbb", "status": "RUNNING", "duration_ms": null}),
        ];
        let out = table(
            &rows,
            &[
                col("ID", "id"),
                col("STATUS", "status"),
                col("TOOK", "duration_ms"),
            ],
        );
        assert_eq!(
            out,
            "ID    STATUS     TOOK\na     SUCCEEDED  113 ms\nbbbb  RUNNING    -\n"
        );
    }

    #[test]
    fn timestamps_lists_and_nested_fields_read_short() {
        let row = json!({"t": "2026-11-23T21:24:31.504470Z", "l": ["a", "b"], "q": {"n": 3}});
        let out = fields(&row, &[col("at", "t"), col("list", "l"), col("n", "q.n")]);
        assert_eq!(out, "at:    2026-11-23 21:24:31\nlist:  a,b\nn:     3\n");
    }

    #[test]
    fn bytes_read_in_the_binary_unit_that_fits_and_dollars_with_cents() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(10 << 20), "10.0 MiB");
        assert_eq!(format_bytes(1 << 40), "1.0 TiB");
        assert_eq!(format_bytes(3 << 39), "1.5 TiB");
        assert_eq!(format_usd(6.25), "$6.25");
        assert_eq!(format_usd(62.5), "$62.50");
        assert_eq!(format_usd(0.00006), "<$0.01");
        assert_eq!(format_usd(0.0), "$0.00");
        let row = json!({"bytes_today": 1u64 << 40, "bytes_daily_limit": null,
                         "estimated_cost_today_usd": 6.25});
        let out = fields(
            &row,
            &[
                col("billed", "bytes_today"),
                col("cost", "estimated_cost_today_usd"),
                col("budget", "bytes_daily_limit"),
            ],
        );
        assert_eq!(
            out,
            "billed:  1.0 TiB
cost:    $6.25
budget:  -
"
        );
    }

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(format_ms(999.4), "999 ms");
        assert_eq!(format_ms(1260.0), "1.3 s");
        assert_eq!(format_ms(180_000.0), "3.0 min");
    }
}
