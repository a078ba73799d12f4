use std::fmt;

/// A BigQuery dataset id: 1 to 1024 ASCII letters, digits or underscores.
///
/// This is the only kind of identifier ever placed into SQL text (table names cannot be query
/// parameters); it is parsed here, so no other value can reach a statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatasetId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a dataset id is 1 to 1024 letters, digits or underscores")]
pub struct InvalidDatasetId;

impl DatasetId {
    pub fn parse(raw: &str) -> Result<Self, InvalidDatasetId> {
        let ok = !raw.is_empty()
            && raw.len() <= 1024
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(InvalidDatasetId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatasetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_and_underscores_are_accepted() {
        assert_eq!(
            DatasetId::parse("org_acme_01").unwrap().as_str(),
            "org_acme_01"
        );
        assert!(DatasetId::parse(&"a".repeat(1024)).is_ok());
    }

    #[test]
    fn anything_that_could_break_out_of_an_identifier_is_rejected() {
        for bad in [
            "",
            "a-b",
            "a.b",
            "a`b",
            "a b",
            "a;DROP",
            "a'b",
            "ä",
            "a\u{0}b",
            &"a".repeat(1025),
        ] {
            assert_eq!(DatasetId::parse(bad), Err(InvalidDatasetId), "{bad:?}");
        }
    }
}
