//! Bytes caps: a BigQuery step may declare `max_bytes_billed`, sent with each of its jobs as
//! `maximumBytesBilled`. BigQuery refuses a job that would bill more before it runs (reason
//! `bytesBilledLimitExceeded`, nothing billed): the step fails with class `cost_cap`, is not
//! retried (the same job would be refused again), and its error names the cap.

/// The smallest cap a step may declare: BigQuery bills at least 10 MB for every query, so a
/// smaller cap would refuse every job.
pub const MIN_BYTES: u64 = 10 * 1024 * 1024;
/// The largest: 1 PiB.
pub const MAX_BYTES: u64 = 1 << 50;

/// The step error class of a job refused by its cap.
pub const CLASS: &str = "cost_cap";

/// A step's declared cap, checked when the catalog loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BytesCap(u64);

impl BytesCap {
    pub fn parse(bytes: u64) -> Result<Self, String> {
        if (MIN_BYTES..=MAX_BYTES).contains(&bytes) {
            Ok(Self(bytes))
        } else {
            Err(format!(
                "max_bytes_billed must be between {MIN_BYTES} (10 MiB, BigQuery's minimum bill \
                 per query) and {MAX_BYTES} (1 PiB) bytes"
            ))
        }
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// What the run's error says when BigQuery refused a job over this cap.
    pub fn refusal(self) -> String {
        format!(
            "refused by BigQuery before it ran: the job would bill more than the step's cap \
             (max_bytes_billed: {} bytes, {})",
            self.0,
            human(self.0)
        )
    }
}

/// Bytes as people read them (binary units).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_is_at_least_bigquerys_minimum_bill_and_at_most_a_pebibyte() {
        assert_eq!(BytesCap::parse(MIN_BYTES).unwrap().bytes(), 10_485_760);
        assert!(BytesCap::parse(MIN_BYTES - 1).is_err());
        assert!(BytesCap::parse(MAX_BYTES).is_ok());
        let e = BytesCap::parse(MAX_BYTES + 1).unwrap_err();
        assert!(
            e.starts_with("max_bytes_billed must be between 10485760"),
            "{e}"
        );
    }

    #[test]
    fn the_refusal_names_the_cap_in_bytes_and_in_binary_units() {
        let cap = BytesCap::parse(10_485_760).unwrap();
        assert_eq!(
            cap.refusal(),
            "refused by BigQuery before it ran: the job would bill more than the step's cap \
             (max_bytes_billed: 10485760 bytes, 10.0 MiB)"
        );
        assert_eq!(human(1 << 40), "1.0 TiB");
        assert_eq!(human(512), "512 B");
    }
}
