//! What an evaluation can fail with, and its one mapping to a gRPC status.

use calcmesh_calc::arith::format_number;
use calcmesh_expr::{EvalError, ParseError};
use tonic::{Code, Status};

/// Why an evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// The expression is malformed or over a limit.
    #[error("cannot parse the expression: {0}")]
    Parse(#[from] ParseError),
    /// A calculator call failed (its status is kept).
    #[error("step {} ({} {} {}) failed: {}", .0.step, format_number(.0.lhs), .0.op, format_number(.0.rhs), .0.error.message())]
    Step(#[from] EvalError<Status>),
    /// The caller's deadline passed.
    #[error("deadline exceeded before the expression's {steps} steps were computed")]
    Deadline {
        /// Steps in the expression.
        steps: usize,
    },
}

impl EvaluateError {
    /// The status code this error answers with.
    pub fn code(&self) -> Code {
        match self {
            EvaluateError::Parse(e) if e.is_limit() => Code::ResourceExhausted,
            EvaluateError::Parse(_) => Code::InvalidArgument,
            EvaluateError::Step(e) => e.error.code(),
            EvaluateError::Deadline { .. } => Code::DeadlineExceeded,
        }
    }
}

impl From<EvaluateError> for Status {
    fn from(err: EvaluateError) -> Self {
        Status::new(err.code(), err.to_string())
    }
}
