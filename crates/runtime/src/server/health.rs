//! `grpc.health.v1.Health`, with the semantics load balancers and Kubernetes probes expect.
//!
//! - `Check` answers SERVING / NOT_SERVING for a registered service (the empty name means the
//!   whole server) and NOT_FOUND for any other name.
//! - `Watch` sends the current status at once and then every change; an unknown name reports
//!   SERVICE_UNKNOWN and stays open, as the protocol requires.
//! - On [`HealthState::drain`] every service turns NOT_SERVING, each Watch stream sends that and
//!   then *ends*, so a graceful shutdown is not held up by watchers (tonic-health's streams never
//!   end, which would stall every drain until its grace period ran out).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

#[derive(Debug, Clone, Default)]
struct State {
    serving: HashMap<String, bool>,
    draining: bool,
}

impl State {
    fn status(&self, service: &str) -> ServingStatus {
        match self.serving.get(service) {
            Some(true) => ServingStatus::Serving,
            Some(false) => ServingStatus::NotServing,
            None => ServingStatus::ServiceUnknown,
        }
    }
}

/// The health of a server's services: a cheap handle, shared by the server and whoever decides
/// the status.
#[derive(Debug, Clone)]
pub struct HealthState {
    tx: Arc<watch::Sender<State>>,
}

impl Default for HealthState {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthState {
    /// A health state in which the server as a whole (the empty service name) is SERVING.
    pub fn new() -> Self {
        let mut state = State::default();
        state.serving.insert(String::new(), true);
        Self {
            tx: Arc::new(watch::Sender::new(state)),
        }
    }

    /// Registers `service` (a fully qualified name such as `calculator.Calculator`) or changes
    /// its status. Ignored once draining: a draining server never turns SERVING again.
    pub fn set_serving(&self, service: &str, serving: bool) {
        self.tx.send_if_modified(|state| {
            if state.draining || state.serving.get(service) == Some(&serving) {
                return false;
            }
            state.serving.insert(service.to_owned(), serving);
            tracing::info!(service, serving, "health status changed");
            true
        });
    }

    /// The status of `service`: `None` when it was never registered.
    pub fn is_serving(&self, service: &str) -> Option<bool> {
        self.tx.borrow().serving.get(service).copied()
    }

    /// Turns every service NOT_SERVING for good and ends every Watch stream after telling it so.
    pub fn drain(&self) {
        self.tx.send_modify(|state| {
            state.draining = true;
            state.serving.values_mut().for_each(|s| *s = false);
        });
    }

    /// Whether [`drain`](Self::drain) was called.
    pub fn is_draining(&self) -> bool {
        self.tx.borrow().draining
    }

    /// The tonic service that answers `grpc.health.v1.Health` from this state.
    pub(crate) fn service(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService {
            state: self.clone(),
        })
    }
}

/// The `grpc.health.v1.Health` implementation behind [`HealthState::service`].
#[derive(Debug)]
pub(crate) struct HealthService {
    state: HealthState,
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status.into(),
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        match self.state.tx.borrow().status(service) {
            ServingStatus::ServiceUnknown => Err(Status::not_found(format!(
                "unknown service {service:?}: this server reports health for \"\" and the services it serves"
            ))),
            status => Ok(Response::new(response(status))),
        }
    }

    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let mut rx = self.state.tx.subscribe();
        let (tx, out) = mpsc::channel(2);
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let (status, draining) = {
                    let state = rx.borrow_and_update();
                    (state.status(&service), state.draining)
                };
                if last != Some(status) {
                    if tx.send(Ok(response(status))).await.is_err() {
                        return;
                    }
                    last = Some(status);
                }
                if draining {
                    return;
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(out)))
    }
}
