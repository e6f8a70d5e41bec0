//! Arithmetic expressions: text in, a [`Program`] out, evaluated locally or through any async
//! binary operation (for calcmesh, a gRPC call to a calculator). Nothing here knows of gRPC.
//!
//! # Layout
//! - [`parse`](mod@parse): an iterative (shunting-yard) parser with [`Limits`]; no input can overflow the
//!   stack, and every error names what was expected and where ([`ParseError`]).
//! - [`eval`]: [`Program::evaluate`] runs every binary operation through a caller-given async
//!   function, as many at once as the expression's shape allows; [`Program::evaluate_local`]
//!   computes the same locally.
//!
//! Grammar: numbers (`12`, `3.5`, `.5`, `1e-3`), binary `+ - * / % ^`, unary `-` and `+`,
//! parentheses. Precedence from loosest: `+ -`, then `* / %`, then unary minus, then `^`, which
//! is right-associative: `-2^2 = -4`, `2^3^2 = 512`, `2^-1 = 0.5`.

pub mod eval;
pub mod parse;

pub use eval::{EvalError, Step};
pub use parse::{Limits, Node, ParseError, Program, parse};
