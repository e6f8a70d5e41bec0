//! Deadlines that travel: read the caller's `grpc-timeout` so downstream calls get no more time
//! than the caller has left.

use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

/// The time the caller gave this call, from its `grpc-timeout` header (`None` if it set none or
/// the header is malformed). Format per the gRPC HTTP/2 spec: up to 8 digits and a unit
/// `H M S m u n`.
pub fn time_left(metadata: &MetadataMap) -> Option<Duration> {
    timeout_of(metadata.as_ref())
}

/// `grpc-timeout`, parsed once rather than at every lookup.
static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// [`time_left`] from a request's headers: the one place a `grpc-timeout` is read (the server's
/// deadline, a channel's, a handler's).
pub(crate) fn timeout_of(headers: &http::HeaderMap) -> Option<Duration> {
    parse_timeout(
        crate::headers::find(headers, &GRPC_TIMEOUT)?
            .to_str()
            .ok()?,
    )
}

/// A `grpc-timeout` value for `timeout`: at most 8 digits, in the finest unit that fits.
pub(crate) fn format_timeout(timeout: Duration) -> String {
    let units: [(u128, &str); 6] = [
        (1, "n"),
        (1_000, "u"),
        (1_000_000, "m"),
        (1_000_000_000, "S"),
        (60_000_000_000, "M"),
        (3_600_000_000_000, "H"),
    ];
    let nanos = timeout.as_nanos();
    for (size, unit) in units {
        let value = nanos.div_ceil(size);
        if value <= 99_999_999 {
            return format!("{value}{unit}");
        }
    }
    "99999999H".to_owned()
}

/// Parses a `grpc-timeout` value.
pub(crate) fn parse_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The instant by which this call must finish, if the caller set a deadline.
pub fn deadline(metadata: &MetadataMap) -> Option<Instant> {
    time_left(metadata).map(|left| Instant::now() + left)
}

/// Sets `request`'s timeout to what is left until `deadline` (nothing if there is none).
pub fn propagate<T>(request: &mut tonic::Request<T>, deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", value.parse().unwrap());
        m
    }

    #[test]
    fn parses_every_unit() {
        assert_eq!(time_left(&with("2H")), Some(Duration::from_secs(7200)));
        assert_eq!(time_left(&with("3M")), Some(Duration::from_secs(180)));
        assert_eq!(time_left(&with("5S")), Some(Duration::from_secs(5)));
        assert_eq!(time_left(&with("50m")), Some(Duration::from_millis(50)));
        assert_eq!(time_left(&with("7u")), Some(Duration::from_micros(7)));
        assert_eq!(
            time_left(&with("99999999n")),
            Some(Duration::from_nanos(99_999_999))
        );
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in ["", "S", "5", "5x", "123456789S", "-1S", "1.5S"] {
            let m = if bad.is_empty() {
                MetadataMap::new()
            } else {
                with(bad)
            };
            assert_eq!(time_left(&m), None, "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn propagation_passes_on_the_time_left() {
        let deadline = deadline(&with("100m"));
        tokio::time::advance(Duration::from_millis(40)).await;
        let mut request = tonic::Request::new(());
        propagate(&mut request, deadline);
        assert_eq!(request.metadata().get("grpc-timeout").unwrap(), "60000000n");
    }
}
