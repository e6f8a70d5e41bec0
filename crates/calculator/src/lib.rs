//! The calculator service: `calculator.Calculator`, the original `Calculate` contract unchanged on
//! the wire, plus one RPC of each streaming kind.
//!
//! # Layout
//! - [`CalculatorService`]: the tonic service; each RPC converts wire types to domain types,
//!   calls [`calcmesh_calc`], and converts back.
//! - [`ServiceError`]: every domain error, and its one conversion to a [`tonic::Status`].
//!
//! Serve it on the mesh runtime with [`mesh_server`] (the tonic service alone: [`server`]).

mod error;
mod service;

pub use error::ServiceError;
pub use service::{CalculatorService, mesh_server, server};
