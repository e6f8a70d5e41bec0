//! What the mesh shows of itself: go-grpc-prometheus metrics of every call and the `rpc` span
//! around it ([`metrics`]), and W3C trace context carried across services ([`trace`]).
//!
//! Telemetry knows neither the server nor the client: both hand their calls to it, and each
//! registers what it counts into a registry it owns.

mod histogram;
pub mod metrics;
pub mod trace;
