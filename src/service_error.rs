//! The service layer's error: what went wrong in domain terms, with no HTTP in it. The edge
//! maps it to HTTP once ([`crate::http::error`]).

use crate::admission::AdmissionError;
use crate::kms::KmsError;
use crate::validation::FieldProblem;
use crate::warehouse::WarehouseError;

/// What went wrong, in domain terms.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input is well-formed JSON but not acceptable; the reason is logged, not returned.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// One field is not acceptable; the problem (names and accepted forms only) is returned.
    #[error("invalid {}: {}", .0.field, .0.problem)]
    InvalidField(FieldProblem),
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    /// The org's plan does not allow it (the text names the plan and its limit; no secrets).
    #[error("plan limit: {0}")]
    PlanLimit(String),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error(transparent)]
    Admission(#[from] AdmissionError),
}
