//! Hedging (gRFC A6's `hedgingPolicy`): copies of one call sent `hedgingDelay` apart, each to
//! another endpoint where there is one, until one answers.
//!
//! The first copy whose answer is committed (response headers, or a status that is not
//! non-fatal) wins; the others are cancelled (dropped: hyper resets their streams). A non-fatal
//! status sends the next copy at once; a server's pushback delays it, or stops further copies.
//! No more than `maxAttempts` copies are ever sent, and `retryThrottling` holds copies back
//! while too many calls fail. When every copy has failed, the last failure is the call's.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;
use tonic::body::Body;

use super::Shared;
use super::attempt::{Call, deadline_exceeded, trailers_only_code};
use crate::client::balance::{Endpoint, Outstanding};
use crate::client::retry::{Pushback, never_reached_server};
use crate::client::service_config::HedgingPolicy;
use crate::error::BoxError;

type Attempted = (Result<http::Response<Body>, BoxError>, Outstanding);

/// What to do after a copy's answer.
enum Next {
    /// This answer is the call's.
    Answer,
    /// A non-fatal failure: send the next copy at `at` (`None`: no more copies).
    Hedge(Option<Instant>),
}

impl Shared {
    /// Sends `call` as hedged copies under `policy`.
    pub(super) async fn hedged(
        self: Arc<Self>,
        call: Call,
        policy: HedgingPolicy,
    ) -> Result<http::Response<Body>, BoxError> {
        let first = self.endpoint_for(&call, &[]).await?;
        let mut tried: Vec<Arc<Endpoint>> = Vec::new();
        let mut running = FuturesUnordered::new();
        let mut next_copy = Some(Instant::now());
        let mut last: Option<Attempted> = None;
        let far = Instant::now() + Duration::from_secs(86_400);
        loop {
            if next_copy.is_some_and(|at| at <= Instant::now()) {
                next_copy = None;
                if let Some(endpoint) = self.hedge_endpoint(&tried, &first, &policy) {
                    running.push(self.attempt(&call, endpoint.clone(), tried.len()));
                    tried.push(endpoint);
                    if tried.len() > 1 {
                        self.retries.fetch_add(1, Ordering::Relaxed);
                    }
                    if tried.len() < policy.max_attempts as usize {
                        next_copy = Some(Instant::now() + policy.delay);
                    }
                }
            }
            if running.is_empty() && next_copy.is_none() {
                return self.final_answer_of(last, &tried, &call);
            }
            tokio::select! {
                Some(done) = running.next() => {
                    let (result, outstanding) = done?;
                    match self.after_copy(&result, &policy) {
                        Next::Answer => {
                            return self.final_answer(result, &tried, &call, outstanding);
                        }
                        Next::Hedge(at) => {
                            next_copy = at.filter(|_| tried.len() < policy.max_attempts as usize);
                            last = Some((result, outstanding));
                        }
                    }
                }
                () = tokio::time::sleep_until(next_copy.unwrap_or(far)) => {}
                () = tokio::time::sleep_until(call.deadline.unwrap_or(far)) => {
                    return Err(deadline_exceeded());
                }
            }
        }
    }

    /// The endpoint for the next copy: the first pick, then one not tried yet where the
    /// balancer has one. `None` when throttling holds copies back.
    fn hedge_endpoint(
        &self,
        tried: &[Arc<Endpoint>],
        first: &Arc<Endpoint>,
        policy: &HedgingPolicy,
    ) -> Option<Arc<Endpoint>> {
        if tried.is_empty() {
            return Some(first.clone());
        }
        if tried.len() >= policy.max_attempts as usize
            || self.live.throttle().is_some_and(|t| !t.allows())
        {
            return None;
        }
        self.balancer.pick(tried)
    }

    /// Whether a copy's answer ends the call, or the next copy goes out (and when).
    fn after_copy(
        &self,
        result: &Result<http::Response<Body>, BoxError>,
        policy: &HedgingPolicy,
    ) -> Next {
        let (code, pushback) = match result {
            Ok(response) => match trailers_only_code(response) {
                Some(code) if code != tonic::Code::Ok => (code, Pushback::of(response.headers())),
                _ => return Next::Answer,
            },
            // A copy the server never saw (a connection closing under it) ends nothing: the
            // next copy goes at once, as a transparent retry would.
            Err(err) if never_reached_server(err.as_ref()) => {
                return Next::Hedge(Some(Instant::now()));
            }
            Err(_) => (tonic::Code::Unavailable, Pushback::None),
        };
        if !policy.non_fatal_codes.contains(&code) {
            return Next::Answer;
        }
        if let Some(throttle) = self.live.throttle() {
            throttle.failed();
        }
        Next::Hedge(match pushback {
            Pushback::None => Some(Instant::now()),
            Pushback::After(wait) => Some(Instant::now() + wait),
            Pushback::Stop => None,
        })
    }

    /// When every copy failed non-fatally: the last one's failure.
    fn final_answer_of(
        &self,
        last: Option<Attempted>,
        tried: &[Arc<Endpoint>],
        call: &Call,
    ) -> Result<http::Response<Body>, BoxError> {
        match last {
            Some((result, outstanding)) => self.final_answer(result, tried, call, outstanding),
            None => Err(self.nowhere_to_go(call.deadline)),
        }
    }
}
