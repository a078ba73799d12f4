use serde::{Deserialize, Serialize};

/// What an org API key may do. A key created without scopes has all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Scope {
    #[serde(rename = "pipelines:run")]
    PipelinesRun,
    #[serde(rename = "runs:read")]
    RunsRead,
    #[serde(rename = "integrations:write")]
    IntegrationsWrite,
    #[serde(rename = "integrations:read")]
    IntegrationsRead,
    #[serde(rename = "keys:manage")]
    KeysManage,
    /// Read the org's own profile, quota and audit log.
    #[serde(rename = "org:read")]
    OrgRead,
    /// Enable, pause and resume schedules; start and cancel backfills.
    #[serde(rename = "schedules:write")]
    SchedulesWrite,
    /// List schedules and backfills.
    #[serde(rename = "schedules:read")]
    SchedulesRead,
    /// Add, delete and test alert channels.
    #[serde(rename = "notifications:write")]
    NotificationsWrite,
    /// List alert channels and deliveries.
    #[serde(rename = "notifications:read")]
    NotificationsRead,
}

impl Scope {
    pub const ALL: [Scope; 10] = [
        Scope::PipelinesRun,
        Scope::RunsRead,
        Scope::IntegrationsWrite,
        Scope::IntegrationsRead,
        Scope::KeysManage,
        Scope::OrgRead,
        Scope::SchedulesWrite,
        Scope::SchedulesRead,
        Scope::NotificationsWrite,
        Scope::NotificationsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::PipelinesRun => "pipelines:run",
            Scope::RunsRead => "runs:read",
            Scope::IntegrationsWrite => "integrations:write",
            Scope::IntegrationsRead => "integrations:read",
            Scope::KeysManage => "keys:manage",
            Scope::OrgRead => "org:read",
            Scope::SchedulesWrite => "schedules:write",
            Scope::SchedulesRead => "schedules:read",
            Scope::NotificationsWrite => "notifications:write",
            Scope::NotificationsRead => "notifications:read",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Scope::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Stored scopes as a list: empty means every scope.
    pub fn normalize(requested: &[Scope]) -> Vec<Scope> {
        if requested.is_empty() {
            return Scope::ALL.to_vec();
        }
        let mut out: Vec<Scope> = Vec::new();
        for s in requested {
            if !out.contains(s) {
                out.push(*s);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_through_their_names() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(Scope::parse("admin"), None);
    }

    #[test]
    fn no_scopes_means_all_scopes() {
        assert_eq!(Scope::normalize(&[]), Scope::ALL.to_vec());
        assert_eq!(
            Scope::normalize(&[Scope::RunsRead, Scope::RunsRead]),
            vec![Scope::RunsRead]
        );
    }
}
