//! `grpc.channelz.v1.Channelz` over the [`registry`](super::registry): snapshots turned into
//! channelz's messages. Lists page as gRPC's do: from a start id, at most `max_results` (100 when
//! 0), with `end` set when nothing is left. An unknown id is NOT_FOUND, naming it.

use std::sync::Arc;

use calcmesh_proto::channelz as pb;
use pb::channelz_server::{Channelz, ChannelzServer};
use tonic::{Request, Response, Status};

use super::registry::{
    self, CallCounts, ChannelSnapshot, Connectivity, ServerEntry, SocketStats, SubchannelSnapshot,
};

/// The channelz service of this process: the same answers on every server that serves it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChannelzService;

impl ChannelzService {
    /// The tonic service, for [`crate::Server::add_service`].
    pub fn server() -> ChannelzServer<Self> {
        ChannelzServer::new(Self)
    }
}

const DEFAULT_PAGE: usize = 100;

/// At most `max` (100 when 0 or less) of `items`, and whether that is all of them.
fn page<T>(mut items: Vec<T>, max: i64) -> (Vec<T>, bool) {
    let max = usize::try_from(max)
        .ok()
        .filter(|m| *m > 0)
        .unwrap_or(DEFAULT_PAGE);
    let end = items.len() <= max;
    items.truncate(max);
    (items, end)
}

fn timestamp(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    })
}

fn channel_data(target: &str, state: Connectivity, calls: CallCounts) -> pb::ChannelData {
    let state = match state {
        Connectivity::Idle => pb::channel_connectivity_state::State::Idle,
        Connectivity::Connecting => pb::channel_connectivity_state::State::Connecting,
        Connectivity::Ready => pb::channel_connectivity_state::State::Ready,
        Connectivity::TransientFailure => pb::channel_connectivity_state::State::TransientFailure,
    };
    pb::ChannelData {
        state: Some(pb::ChannelConnectivityState {
            state: state as i32,
        }),
        target: target.to_owned(),
        calls_started: calls.started,
        calls_succeeded: calls.succeeded,
        calls_failed: calls.failed,
        last_call_started_timestamp: timestamp(calls.last_started_ms),
        trace: None,
    }
}

/// A subchannel's trace: its last connection failure, while that is the latest news.
fn trace(failure: Option<&(String, i64)>) -> Option<pb::ChannelTrace> {
    let (description, at) = failure?;
    Some(pb::ChannelTrace {
        num_events_logged: 1,
        creation_timestamp: None,
        events: vec![pb::ChannelTraceEvent {
            description: format!("connection failed: {description}"),
            severity: pb::channel_trace_event::Severity::CtError as i32,
            timestamp: timestamp(*at),
        }],
    })
}

fn socket_ref(socket: &SocketStats) -> pb::SocketRef {
    let name = match (socket.local, socket.remote) {
        (Some(local), Some(remote)) => format!("{local} -> {remote}"),
        (Some(local), None) => format!("listening on {local}"),
        _ => String::new(),
    };
    pb::SocketRef {
        socket_id: socket.id,
        name,
    }
}

fn subchannel_ref(sub: &SubchannelSnapshot) -> pb::SubchannelRef {
    pb::SubchannelRef {
        subchannel_id: sub.id,
        name: sub.address.clone(),
    }
}

fn channel(id: i64, snapshot: &ChannelSnapshot) -> pb::Channel {
    pb::Channel {
        r#ref: Some(pb::ChannelRef {
            channel_id: id,
            name: snapshot.target.clone(),
        }),
        data: Some(channel_data(
            &snapshot.target,
            snapshot.state,
            snapshot.calls,
        )),
        subchannel_ref: snapshot.subchannels.iter().map(subchannel_ref).collect(),
    }
}

fn server(id: i64, entry: &ServerEntry) -> pb::Server {
    let calls = entry.calls();
    pb::Server {
        r#ref: Some(pb::ServerRef {
            server_id: id,
            name: entry.name.clone(),
        }),
        data: Some(pb::ServerData {
            calls_started: calls.started,
            calls_succeeded: calls.succeeded,
            calls_failed: calls.failed,
            last_call_started_timestamp: timestamp(calls.last_started_ms),
        }),
        listen_socket: vec![socket_ref(&entry.listen_socket)],
    }
}

fn address(addr: Option<std::net::SocketAddr>) -> Option<pb::Address> {
    let addr = addr?;
    let ip_address = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    Some(pb::Address {
        address: Some(pb::address::Address::TcpipAddress(
            pb::address::TcpIpAddress {
                ip_address,
                port: i32::from(addr.port()),
            },
        )),
    })
}

fn socket(stats: &SocketStats, summary: bool) -> pb::Socket {
    let s = stats.snapshot();
    let data = pb::SocketData {
        streams_started: s.streams_started,
        streams_succeeded: s.streams_succeeded,
        streams_failed: s.streams_failed,
        messages_sent: s.messages_sent,
        messages_received: s.messages_received,
        keep_alives_sent: s.keep_alives_sent,
        last_local_stream_created_timestamp: timestamp(s.last_local_stream_ms),
        last_remote_stream_created_timestamp: timestamp(s.last_remote_stream_ms),
        last_message_sent_timestamp: timestamp(s.last_message_sent_ms),
        last_message_received_timestamp: timestamp(s.last_message_received_ms),
    };
    let security = stats.tls.as_ref().map(|tls| pb::Security {
        model: Some(pb::security::Model::Tls(pb::security::Tls {
            cipher_suite: Some(pb::security::tls::CipherSuite::StandardName(
                tls.cipher.clone(),
            )),
            local_certificate: tls.local_certificate.clone(),
            remote_certificate: tls.remote_certificate.clone(),
        })),
    });
    pb::Socket {
        r#ref: Some(socket_ref(stats)),
        data: Some(data),
        local: address(stats.local),
        remote: address(stats.remote),
        // A summary is the numbers only.
        security: if summary { None } else { security },
    }
}

fn not_found(what: &str, id: i64) -> Status {
    Status::not_found(format!("no {what} with id {id} in this process"))
}

fn find_server(id: i64) -> Result<Arc<ServerEntry>, Status> {
    registry::server(id).ok_or_else(|| not_found("server", id))
}

#[tonic::async_trait]
impl Channelz for ChannelzService {
    async fn get_top_channels(
        &self,
        request: Request<pb::GetTopChannelsRequest>,
    ) -> Result<Response<pb::GetTopChannelsResponse>, Status> {
        let request = request.into_inner();
        let (channels, end) = page(
            registry::channels(request.start_channel_id),
            request.max_results,
        );
        let channel = channels
            .iter()
            .map(|(id, c)| channel(*id, &c.snapshot()))
            .collect();
        Ok(Response::new(pb::GetTopChannelsResponse { channel, end }))
    }

    async fn get_servers(
        &self,
        request: Request<pb::GetServersRequest>,
    ) -> Result<Response<pb::GetServersResponse>, Status> {
        let request = request.into_inner();
        let (servers, end) = page(
            registry::servers(request.start_server_id),
            request.max_results,
        );
        let server = servers.iter().map(|(id, s)| server(*id, s)).collect();
        Ok(Response::new(pb::GetServersResponse { server, end }))
    }

    async fn get_server(
        &self,
        request: Request<pb::GetServerRequest>,
    ) -> Result<Response<pb::GetServerResponse>, Status> {
        let id = request.into_inner().server_id;
        let entry = find_server(id)?;
        Ok(Response::new(pb::GetServerResponse {
            server: Some(server(id, &entry)),
        }))
    }

    async fn get_server_sockets(
        &self,
        request: Request<pb::GetServerSocketsRequest>,
    ) -> Result<Response<pb::GetServerSocketsResponse>, Status> {
        let request = request.into_inner();
        let entry = find_server(request.server_id)?;
        let sockets = entry
            .sockets()
            .into_iter()
            .filter(|s| s.id >= request.start_socket_id)
            .collect();
        let (sockets, end) = page(sockets, request.max_results);
        let socket_ref = sockets.iter().map(|s| socket_ref(s)).collect();
        Ok(Response::new(pb::GetServerSocketsResponse {
            socket_ref,
            end,
        }))
    }

    async fn get_channel(
        &self,
        request: Request<pb::GetChannelRequest>,
    ) -> Result<Response<pb::GetChannelResponse>, Status> {
        let id = request.into_inner().channel_id;
        let found = registry::channel(id).ok_or_else(|| not_found("channel", id))?;
        Ok(Response::new(pb::GetChannelResponse {
            channel: Some(channel(id, &found.snapshot())),
        }))
    }

    async fn get_subchannel(
        &self,
        request: Request<pb::GetSubchannelRequest>,
    ) -> Result<Response<pb::GetSubchannelResponse>, Status> {
        let id = request.into_inner().subchannel_id;
        let sub = registry::channels(0)
            .into_iter()
            .flat_map(|(_, c)| c.snapshot().subchannels)
            .find(|s| s.id == id)
            .ok_or_else(|| not_found("subchannel", id))?;
        Ok(Response::new(pb::GetSubchannelResponse {
            subchannel: Some(pb::Subchannel {
                r#ref: Some(subchannel_ref(&sub)),
                data: Some(pb::ChannelData {
                    trace: trace(sub.failure.as_ref()),
                    ..channel_data(&sub.address, sub.state, sub.calls)
                }),
                socket_ref: sub.socket.iter().map(|s| socket_ref(s)).collect(),
            }),
        }))
    }

    async fn get_socket(
        &self,
        request: Request<pb::GetSocketRequest>,
    ) -> Result<Response<pb::GetSocketResponse>, Status> {
        let request = request.into_inner();
        let stats = registry::socket(request.socket_id)
            .ok_or_else(|| not_found("socket", request.socket_id))?;
        Ok(Response::new(pb::GetSocketResponse {
            socket: Some(socket(&stats, request.summary)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_at_most_max_results_and_says_whether_it_is_the_end() {
        assert_eq!(page(vec![1, 2, 3], 2), (vec![1, 2], false));
        assert_eq!(page(vec![1, 2, 3], 3), (vec![1, 2, 3], true));
        assert_eq!(page((0..150).collect(), 0).0.len(), 100, "0 means 100");
    }

    #[test]
    fn timestamps_are_seconds_and_nanos_and_never_is_none() {
        let t = timestamp(1_700_000_000_123).unwrap();
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_000_000));
        assert_eq!(timestamp(0), None);
    }
}
