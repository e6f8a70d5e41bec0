//! What a channel is doing, as data: its target, policy and retries, and per endpoint its state,
//! calls outstanding and finished, failures and ejections. [`MeshChannel::status`] reads it; the
//! admin endpoint serves it as JSON (`/api/mesh`) for the dashboard.

use serde::Serialize;

use super::MeshChannel;
use crate::client::balance::State;

/// One channel, now.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelStatus {
    /// The target, as given.
    pub target: String,
    /// The balancing policy in force.
    pub policy: String,
    /// Attempts sent again (retries and hedges).
    pub retries: u64,
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
                EndpointStatus {
                    address: e.authority.clone(),
                    state: state_name(e.state(), e.outliers.ejected()),
                    outstanding: e.outstanding(),
                    calls,
                    failures,
                    ejections: e.ejections() + outliers,
                }
            })
            .collect();
        ChannelStatus {
            target: shared.target.clone(),
            policy: shared.balancer.policy().to_string(),
            retries: shared.retries.load(std::sync::atomic::Ordering::Relaxed),
            endpoints,
        }
    }
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
