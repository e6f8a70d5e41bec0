//! The service config a channel uses now, and what an update changes.
//!
//! A channel starts with the config it was given (`--service-config`, or none). A source that
//! publishes configs replaces it while it runs: etcd's `_grpc_config/SERVICE` key for
//! `etcd://…/SERVICE` targets, and DNS TXT `_grpc_config.NAME` for `dns:` targets when the client
//! asks for it (`--dns-service-config`). As gRPC does:
//! - an update that does not parse or validate changes nothing — the last good config stays —
//!   and is logged with its source and JSON path;
//! - a published config that is removed gives the channel back the one it was given.
//!
//! Every call reads the config when it starts, so an update reaches the next call. What it
//! changes: the balancing policy, retry and hedging policies, timeouts, waitForReady, throttling
//! (new tokens when `retryThrottling` changes) and outlier detection. `healthCheckConfig` applies
//! to endpoints added afterwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::client::balance::{Balancer, LbPolicy};
use crate::client::outlier::OutlierDetection;
use crate::client::service_config::ServiceConfig;
use crate::client::throttle::Throttle;

/// A channel's current service config and what is built from it.
#[derive(Debug)]
pub(crate) struct LiveConfig {
    /// The config the channel was given, to return to when a published one is removed.
    given: Option<Arc<ServiceConfig>>,
    /// The policy when no config names one (`--lb`).
    default_policy: LbPolicy,
    current: RwLock<Option<Arc<ServiceConfig>>>,
    throttle: RwLock<Option<Arc<Throttle>>>,
    outlier: watch::Sender<Option<OutlierDetection>>,
    updates: [AtomicU64; 2],
}

/// Published service configs a channel has taken and refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigUpdates {
    /// Updates that changed the channel's config (a removal included).
    pub applied: u64,
    /// Updates that did not parse or validate: the last good config stayed.
    pub refused: u64,
}

impl LiveConfig {
    pub(crate) fn new(given: Option<Arc<ServiceConfig>>, default_policy: LbPolicy) -> Self {
        let live = Self {
            given: given.clone(),
            default_policy,
            current: RwLock::new(None),
            throttle: RwLock::new(None),
            outlier: watch::Sender::new(None),
            updates: Default::default(),
        };
        live.set(given);
        live
    }

    /// The config now.
    pub(crate) fn get(&self) -> Option<Arc<ServiceConfig>> {
        crate::sync::read(&self.current).clone()
    }

    /// `retryThrottling`'s tokens, when the config sets it.
    pub(crate) fn throttle(&self) -> Option<Arc<Throttle>> {
        crate::sync::read(&self.throttle).clone()
    }

    /// The balancing policy the config chose, or the channel's default.
    pub(crate) fn policy(&self) -> LbPolicy {
        self.get()
            .and_then(|c| c.lb_policy)
            .unwrap_or(self.default_policy)
    }

    /// Outlier detection's settings, as they change.
    pub(crate) fn outlier_detection(&self) -> watch::Receiver<Option<OutlierDetection>> {
        self.outlier.subscribe()
    }

    /// A published update from `source`: the JSON, or `None` when the source has none (any
    /// more). A config that cannot be used is logged and changes nothing.
    pub(crate) fn publish(&self, source: &str, json: Option<&str>, balancer: &Balancer) {
        let config = match json {
            None => self.given.clone(),
            Some(json) => match ServiceConfig::parse(source, json) {
                Ok(config) => Some(Arc::new(config)),
                Err(err) => {
                    tracing::warn!(%err, "service config update refused: keeping the last good one");
                    self.updates[1].fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        };
        if config == self.get() {
            return;
        }
        match json {
            Some(_) => tracing::info!(source, "service config updated"),
            None => tracing::info!(
                source,
                "published service config gone: back to the one given"
            ),
        }
        self.set(config);
        balancer.set_policy(self.policy());
        self.updates[0].fetch_add(1, Ordering::Relaxed);
    }

    /// Published configs taken and refused so far.
    pub(crate) fn updates(&self) -> ConfigUpdates {
        ConfigUpdates {
            applied: self.updates[0].load(Ordering::Relaxed),
            refused: self.updates[1].load(Ordering::Relaxed),
        }
    }

    fn set(&self, config: Option<Arc<ServiceConfig>>) {
        let throttling = config.as_ref().and_then(|c| c.retry_throttling);
        let old = self.get().and_then(|c| c.retry_throttling);
        if throttling != old {
            *crate::sync::write(&self.throttle) = throttling.map(|t| Arc::new(Throttle::new(t)));
        }
        let outlier = config.as_ref().and_then(|c| c.outlier_detection.clone());
        self.outlier.send_if_modified(|o| {
            let changed = *o != outlier;
            *o = outlier;
            changed
        });
        *crate::sync::write(&self.current) = config;
    }
}
