//! The evaluator service, `calcmesh.evaluator.v1.Evaluator`: parses an arithmetic expression and
//! computes every binary operation by calling `calculator.Calculator` over gRPC.
//!
//! # Layout
//! - [`EvaluatorService`]: the tonic service. Parsing and scheduling live in [`calcmesh_expr`];
//!   this crate supplies the operation (a `Calculate` call) and converts to and from the wire.
//! - [`EvaluateError`]: what can go wrong, and its one conversion to a [`tonic::Status`].
//!
//! Independent operations go out concurrently on one channel, multiplexed over one HTTP/2
//! connection per calculator. The caller's deadline bounds every downstream call; dropping the
//! call (cancellation, deadline) drops every downstream call in flight.

mod error;
mod service;

pub use error::EvaluateError;
pub use service::{EvaluatorConfig, EvaluatorService, server};
