//! W3C trace context (`traceparent`) across services.
//!
//! Every call a [`Server`](crate::Server) takes runs with a [`TraceContext`]: the caller's trace
//! id from its `traceparent` header (or a new trace when it sent none or an invalid one) and a
//! new span id for this server's part of the work. While the handler runs — and while its
//! response stream is polled — that context is [`current`], and every call the handler makes
//! through a [`MeshChannel`](crate::MeshChannel) carries it downstream as `traceparent`, so one
//! evaluation has one trace id in the evaluator's and every calculator's logs.
//!
//! The format is `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`
//! (<https://www.w3.org/TR/trace-context/>). All-zero ids are invalid; a future version's extra
//! fields are ignored, as the spec asks.

use std::fmt;

/// The request header that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";
/// [`TRACEPARENT`], parsed once rather than at every lookup.
static TRACEPARENT_NAME: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);

/// One span's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace every span of one request shares.
    pub trace_id: u128,
    /// This span.
    pub span_id: u64,
    /// The W3C trace flags (bit 0: sampled).
    pub flags: u8,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

// Drawn from the full range and drawn again on zero (once in 2^64): a range draw costs more.
fn nonzero_u64() -> u64 {
    loop {
        let n = fastrand::u64(..);
        if n != 0 {
            return n;
        }
    }
}

fn nonzero_u128() -> u128 {
    loop {
        let n = fastrand::u128(..);
        if n != 0 {
            return n;
        }
    }
}

impl TraceContext {
    /// A new trace (sampled), for a call that came with none.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero_u128(),
            span_id: nonzero_u64(),
            flags: 1,
        }
    }

    /// A new span in the same trace, e.g. a server's span for a call made from this one.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_u64(),
            ..*self
        }
    }

    /// Parses a `traceparent` header value; `None` if it is not valid W3C trace context.
    pub fn parse(value: &str) -> Option<Self> {
        let mut fields = value.split('-');
        let version = fields.next()?;
        let trace_id = fields.next()?;
        let span_id = fields.next()?;
        let flags = fields.next()?;
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        // Version 00 has exactly four fields; a later version may append more; ff is invalid.
        if !hex(version, 2) || version == "ff" || (version == "00" && fields.next().is_some()) {
            return None;
        }
        if !hex(trace_id, 32) || !hex(span_id, 16) || !hex(flags, 2) {
            return None;
        }
        let context = Self {
            trace_id: u128::from_str_radix(trace_id, 16).ok()?,
            span_id: u64::from_str_radix(span_id, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (context.trace_id != 0 && context.span_id != 0).then_some(context)
    }

    /// The context a server span gets from the caller's `traceparent`: a child of the caller's
    /// span, or a new trace when the header is missing or invalid.
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        crate::headers::find(headers, &TRACEPARENT_NAME)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
            .map_or_else(Self::new_root, |parent| parent.child())
    }

    /// The `traceparent` value naming this span as the parent.
    pub fn header_value(&self) -> http::HeaderValue {
        // 55 ASCII characters: always a valid header value.
        http::HeaderValue::try_from(self.to_string()).expect("traceparent is ASCII")
    }

    /// The trace id as 32 lowercase hex digits, as log lines show it.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// Runs `f` with this context as [`current`] (for polling a response body).
    pub(crate) fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// `future` with this context as [`current`] whenever it is polled.
    pub(crate) fn scope<F: Future>(
        self,
        future: F,
    ) -> tokio::task::futures::TaskLocalFuture<Self, F> {
        CURRENT.scope(self, future)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// The trace context of the call being handled, if any: inside a server's handler (and its
/// response stream), the server span's context.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok()
}

/// Adds `traceparent` for the current context to an outgoing request, unless the caller set one.
pub(crate) fn inject(headers: &mut http::HeaderMap) {
    if let Some(context) = current()
        && !headers.contains_key(&TRACEPARENT_NAME)
    {
        headers.insert(TRACEPARENT_NAME.clone(), context.header_value());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_children_keep_the_trace() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceContext::parse(text).unwrap();
        assert_eq!(parsed.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parsed.span_id, 0x00f067aa0ba902b7);
        assert_eq!(parsed.to_string(), text);
        let child = parsed.child();
        assert_eq!(child.trace_id, parsed.trace_id);
        assert_ne!(child.span_id, parsed.span_id);
        assert_eq!(
            TraceContext::parse(&child.to_string()),
            Some(child),
            "a child's header parses back"
        );
    }

    #[test]
    fn rejects_what_the_spec_rejects() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        // A later version may carry more fields.
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }

    #[test]
    fn missing_or_invalid_header_starts_a_new_trace() {
        let mut headers = http::HeaderMap::new();
        let a = TraceContext::from_headers(&headers);
        headers.insert(TRACEPARENT, http::HeaderValue::from_static("garbage"));
        let b = TraceContext::from_headers(&headers);
        assert_ne!(a.trace_id, 0);
        assert_ne!(a.trace_id, b.trace_id);
    }

    #[tokio::test]
    async fn inject_uses_the_current_context_and_keeps_an_explicit_one() {
        let context = TraceContext::new_root();
        let mut headers = http::HeaderMap::new();
        inject(&mut headers);
        assert!(headers.is_empty(), "no context outside a call");
        context
            .scope(async {
                inject(&mut headers);
            })
            .await;
        assert_eq!(headers[TRACEPARENT], context.to_string());
        let mut explicit = http::HeaderMap::new();
        explicit.insert(TRACEPARENT, http::HeaderValue::from_static("mine"));
        context.enter(|| inject(&mut explicit));
        assert_eq!(explicit[TRACEPARENT], "mine");
    }
}
