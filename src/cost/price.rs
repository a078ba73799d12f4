//! What bytes cost: BigQuery's on-demand price per TiB billed (`PRICE_PER_TIB_CENTS`, 625 by
//! default: 6.25 USD). Every cost Quarry shows (a run, its org's quota, the per-pipeline stats)
//! is this price times the bytes BigQuery reported billed: an estimate, since a contract,
//! a reservation or a free tier changes the bill, never the bytes.

/// The price of a tebibyte (2^40 bytes) billed, in US cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    cents_per_tib: u64,
}

const TIB: f64 = (1u64 << 40) as f64;

impl Price {
    pub const fn cents_per_tib(cents_per_tib: u64) -> Self {
        Self { cents_per_tib }
    }

    /// What `bytes` billed cost in US dollars, rounded to a millionth of a dollar (BigQuery's
    /// 10 MB minimum is about 60 millionths at 6.25 USD).
    pub fn usd(self, bytes: i64) -> f64 {
        let usd = bytes.max(0) as f64 / TIB * self.cents_per_tib as f64 / 100.0;
        (usd * 1e6).round() / 1e6
    }

    /// [`Price::usd`] of bytes that may be unknown.
    pub fn usd_of(self, bytes: Option<i64>) -> Option<f64> {
        bytes.map(|b| self.usd(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tebibyte_costs_the_price_and_the_10_mb_minimum_costs_millionths() {
        let price = Price::cents_per_tib(625);
        assert_eq!(price.usd(1 << 40), 6.25);
        assert_eq!(price.usd(10 << 40), 62.5);
        assert_eq!(price.usd(3 << 39), 9.375);
        assert_eq!(price.usd(10_485_760), 0.00006);
        assert_eq!(price.usd(0), 0.0);
        assert_eq!(price.usd(-5), 0.0);
        assert_eq!(price.usd_of(None), None);
        assert_eq!(Price::cents_per_tib(500).usd_of(Some(1 << 40)), Some(5.0));
    }
}
