use std::fmt;

use super::DatasetId;

/// A tenant id: 3-64 characters of lowercase letters, digits, `_` and `-`, starting and ending
/// with a letter or digit. Its dataset id replaces `-` by `_`, so `a-b` and `a_b` share one
/// dataset name (onboarding refuses the second with 409).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct OrgSlug(String);

/// Slugs that would collide with route segments.
const RESERVED: &[&str] = &["run"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an org slug is 3-64 of [a-z0-9_-], starting and ending with a letter or digit")]
pub struct InvalidOrgSlug;

impl OrgSlug {
    pub fn parse(raw: &str) -> Result<Self, InvalidOrgSlug> {
        let bytes = raw.as_bytes();
        let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let ok = (3..=64).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
            && bytes.first().is_some_and(edge_ok)
            && bytes.last().is_some_and(edge_ok);
        // `run` would make /api/v1/pipelines/run/... ambiguous.
        if ok && !RESERVED.contains(&raw) {
            Ok(Self(raw.to_string()))
        } else {
            Err(InvalidOrgSlug)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The org's own BigQuery dataset.
    pub fn dataset_id(&self) -> DatasetId {
        DatasetId::parse(&self.0.replace('-', "_"))
            .expect("a valid slug maps to a valid dataset id")
    }
}

impl fmt::Display for OrgSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for OrgSlug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        OrgSlug::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_slugs_parse() {
        for ok in ["acme", "a-b", "a_b", "abc", "org-42_x", &"a".repeat(64)] {
            assert!(OrgSlug::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn invalid_slugs_are_rejected() {
        for bad in [
            "",
            "ab",
            "Acme",
            "-acme",
            "acme-",
            "_acme",
            "acme_",
            "ac me",
            "acme/..",
            "../etc",
            "acme.x",
            "acmé",
            "a\u{0}b",
            "acme;drop",
            &"a".repeat(65),
        ] {
            assert_eq!(OrgSlug::parse(bad), Err(InvalidOrgSlug), "{bad:?}");
        }
    }

    #[test]
    fn hyphens_and_underscores_share_a_dataset_id() {
        assert_eq!(
            OrgSlug::parse("a-b").unwrap().dataset_id(),
            OrgSlug::parse("a_b").unwrap().dataset_id()
        );
        assert_eq!(OrgSlug::parse("a-b").unwrap().dataset_id().as_str(), "a_b");
    }
}
