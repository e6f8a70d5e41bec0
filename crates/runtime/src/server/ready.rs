//! Calling a service that is ready now, without waiting for it. Every service a calcmesh server
//! stacks (its own layers, tonic's generated services, gRPC-Web's) is always ready, so waiting
//! for readiness the general way (tower's `Oneshot`) would only move the service and the request
//! into one more future per call. A service that is not ready gets no call: its caller answers
//! [`not_ready`].

use std::convert::Infallible;
use std::task::{Context, Poll, Waker};

use tonic::body::Body;

/// `service`'s future for `request` if the service is ready now; `None` if it is not.
pub(crate) fn call_now<S, R>(service: &mut S, request: R) -> Option<S::Future>
where
    S: tower_service::Service<R, Error = Infallible>,
{
    match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => Some(service.call(request)),
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => None,
    }
}

/// The answer to a call its service was not ready to take: UNAVAILABLE, which a client may retry.
pub(crate) fn not_ready() -> http::Response<Body> {
    tonic::Status::unavailable("the server cannot take this call now; try again").into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service that is never ready, and one that always is.
    #[derive(Clone, Copy)]
    struct Ready(bool);

    impl tower_service::Service<()> for Ready {
        type Response = ();
        type Error = Infallible;
        type Future = std::future::Ready<Result<(), Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            if self.0 {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }

        fn call(&mut self, (): ()) -> Self::Future {
            assert!(self.0, "called while not ready");
            std::future::ready(Ok(()))
        }
    }

    #[test]
    fn only_a_ready_service_is_called() {
        assert!(call_now(&mut Ready(true), ()).is_some());
        assert!(call_now(&mut Ready(false), ()).is_none());
        let status = tonic::Status::from_header_map(not_ready().headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
}
