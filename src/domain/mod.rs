//! Domain newtypes: each one parses its raw input once and cannot hold an invalid value.

mod dataset_id;

pub use dataset_id::DatasetId;
