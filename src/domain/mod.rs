//! Domain newtypes: each one parses its raw input once and cannot hold an invalid value.

mod api_key;
mod dataset_id;
mod org_slug;
mod plan;
mod scope;

pub use api_key::{ApiKey, MalformedKey, hash_hex};
pub use dataset_id::DatasetId;
pub use org_slug::{InvalidOrgSlug, OrgSlug};
pub use plan::{MAX_LIMIT, Plan, QuotaLimits};
pub use scope::Scope;
