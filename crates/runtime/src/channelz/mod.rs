//! gRPC's channelz (gRFC A14): what this process's servers, channels and connections are doing,
//! served as `grpc.channelz.v1.Channelz` for gRPC's own debugging tools (`--channelz`).
//!
//! - `registry`: every server, channel, subchannel (a channel's endpoint) and socket (a
//!   connection, accepted or made) with an id; servers and channels report through traits, so
//!   this module imports neither `server/` nor `client/`.
//! - `service`: the RPCs, reading the registry.

pub(crate) mod registry;
mod service;

pub use registry::{CallCounts, SocketStats};
pub use service::ChannelzService;
