//! Schedules: declared in pipeline files ([`crate::definitions::schedule`]), enabled per org through the API (`state`),
//! fired by every instance's scheduler (`scheduler`), each tick exactly once.

pub mod backfill;
pub mod scheduler;
pub mod state;
