//! The signal that starts a graceful drain.

use std::future::Future;

/// A future that completes on the first SIGINT (Ctrl-C) or SIGTERM.
///
/// The handlers are installed when this is *called*, not when the future is first polled: call
/// it before announcing that the server is up, so a signal that arrives at once still drains
/// instead of killing the process.
///
/// If a handler cannot be installed (which only happens when the process is out of resources),
/// the failure is logged and that signal is ignored rather than stopping the server.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind: SignalKind, name: &'static str| {
            signal(kind)
                .inspect_err(|err| tracing::error!(%err, "cannot listen for {name}"))
                .ok()
        };
        let mut int = install(SignalKind::interrupt(), "SIGINT");
        let mut term = install(SignalKind::terminate(), "SIGTERM");
        async move {
            let int = async {
                match int.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let term = async {
                match term.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = int => tracing::info!("SIGINT received"),
                _ = term => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received");
    }
}
