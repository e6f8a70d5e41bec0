//! What a channel is doing, as data: its target, policy and retries, and per endpoint its state,
//! calls outstanding and finished, failures and ejections. [`MeshChannel::status`] reads it; the
//! admin endpoint serves it as JSON (`/api/mesh`) for the dashboard.

use serde::Serialize;

use super::MeshChannel;
use crate::channelz::registry::{
    CallCounts, ChannelSnapshot, ChannelSource, Connectivity, SubchannelSnapshot,
};
use crate::client::balance::State;
use crate::telemetry::metrics::MethodLatency;

/// One channel, now.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelStatus {
    /// The target, as given.
    pub target: String,
    /// The balancing policy in force.
    pub policy: String,
    /// Attempts sent again (retries and hedges).
    pub retries: u64,
    /// How often new connections send a keepalive PING when quiet: as configured, doubled on
    /// each GOAWAY "too_many_pings" from a server (gRFC A8).
    #[serde(rename = "keepalive_time_ms", serialize_with = "millis")]
    pub keepalive_time: std::time::Duration,
    /// When its client certificate stops being valid, in ms since the Unix epoch (mutual TLS).
    pub certificate_expires_ms: Option<i64>,
    /// Each method called, with its latency (a channel given `ClientMetrics` only).
    pub methods: Vec<MethodLatency>,
    /// Its endpoints.
    pub endpoints: Vec<EndpointStatus>,
}

/// One endpoint of a channel, now.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    /// `host:port`.
    pub address: String,
    /// SERVING, NOT_SERVING, DOWN (unreachable), CONNECTING, UNKNOWN (not checked yet) or
    /// EJECTED (an outlier).
    pub state: &'static str,
    /// Calls in progress on it.
    pub outstanding: usize,
    /// Calls finished on it since it was added.
    pub calls: u64,
    /// Of those, the ones that failed.
    pub failures: u64,
    /// Times it went out of rotation (health or reachability), and times it was ejected as an
    /// outlier.
    pub ejections: u64,
    /// When DOWN: why, in one of a few words ([`Diagnosis::reason`](crate::diagnose::Diagnosis)).
    pub reason: Option<&'static str>,
    /// When DOWN: what went wrong and what fixes it.
    pub error: Option<String>,
}

impl MeshChannel {
    /// What the channel is doing now.
    pub fn status(&self) -> ChannelStatus {
        let shared = &self.shared;
        let endpoints = shared
            .balancer
            .snapshot()
            .iter()
            .map(|e| {
                let (calls, failures) = e.outliers.totals();
                let outliers: u64 = crate::client::outlier::Reason::ALL
                    .iter()
                    .map(|r| e.outliers.ejections(*r))
                    .sum();
                let (reason, error) = e.down_reason().unzip();
                EndpointStatus {
                    address: e.authority.clone(),
                    state: state_name(e.state(), e.outliers.ejected()),
                    outstanding: e.outstanding(),
                    calls,
                    failures,
                    ejections: e.ejections() + outliers,
                    reason,
                    error,
                }
            })
            .collect();
        ChannelStatus {
            target: shared.target.clone(),
            policy: shared.balancer.policy().to_string(),
            retries: shared.retries.load(std::sync::atomic::Ordering::Relaxed),
            keepalive_time: shared.keepalive.time(),
            certificate_expires_ms: shared.certificate_expires_ms,
            methods: shared
                .metrics
                .as_ref()
                .map(|m| m.latencies())
                .unwrap_or_default(),
            endpoints,
        }
    }
}

fn millis<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn state_name(state: State, ejected: bool) -> &'static str {
    match state {
        State::Unknown | State::Serving if ejected => "EJECTED",
        State::Unknown => "UNKNOWN",
        State::Serving => "SERVING",
        State::NotServing => "NOT_SERVING",
        State::Down => "DOWN",
        State::Connecting => "CONNECTING",
    }
}

impl ChannelSource for super::Shared {
    /// The channel as channelz shows it: its subchannels are its endpoints, its calls theirs
    /// added up (attempts, so a retried call counts twice), its state the best of theirs.
    fn snapshot(&self) -> ChannelSnapshot {
        let subchannels: Vec<SubchannelSnapshot> = self
            .balancer
            .snapshot()
            .iter()
            .map(|e| SubchannelSnapshot {
                id: e.id,
                address: e.authority.clone(),
                state: e.connectivity(),
                calls: e.calls(),
                socket: e.socket_now(),
                failure: (e.socket.failure_event()).map(|(why, at)| (why.message, at)),
            })
            .collect();
        let mut calls = CallCounts::default();
        for sub in &subchannels {
            calls.started += sub.calls.started;
            calls.succeeded += sub.calls.succeeded;
            calls.failed += sub.calls.failed;
            calls.last_started_ms = calls.last_started_ms.max(sub.calls.last_started_ms);
        }
        let states: Vec<Connectivity> = subchannels.iter().map(|s| s.state).collect();
        let state = [
            Connectivity::Ready,
            Connectivity::Connecting,
            Connectivity::Idle,
        ]
        .into_iter()
        .find(|s| states.contains(s))
        .unwrap_or(if states.is_empty() {
            Connectivity::Idle
        } else {
            Connectivity::TransientFailure
        });
        ChannelSnapshot {
            target: self.target.clone(),
            state,
            calls,
            subchannels,
        }
    }
}
