//! calcmesh domain code. Nothing here knows about gRPC: services convert these types and errors
//! at their edge.
//!
//! # Layout
//! - [`arith`]: the binary operations `+ - * / % ^` and their errors.
//! - [`factor`]: prime factorization of any `u64` (Miller–Rabin + Pollard's rho, Brent's variant).
//! - [`stats`]: a numerically stable running summary (count, sum, mean, min, max, variance).

pub mod arith;
pub mod factor;
pub mod stats;
