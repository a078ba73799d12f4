//! HTTP handlers, one file per area. Each handler declares its auth policy in its signature.

pub mod admin;
pub mod health;
