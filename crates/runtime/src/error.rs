//! Errors as the runtime passes them around, and the one place that walks an error's `source()`
//! chain: [`chain`] to iterate, [`is_caused_by`] to ask about a cause, [`with_causes`] to say it.

use std::error::Error;

/// The error type of the client's tower services (tonic's transport uses the same).
pub type BoxError = Box<dyn Error + Send + Sync>;

/// An error and its sources, outermost first.
pub fn chain<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e| (*e).source())
}

/// Whether `err` or any of its sources is an `E`.
pub fn is_caused_by<E: Error + 'static>(err: &(dyn Error + 'static)) -> bool {
    chain(err).any(|e| e.is::<E>())
}

/// `text` followed by each source of `err` (not `err` itself) that `text` does not already say,
/// joined with `": "`: one readable line however deep the chain.
pub fn with_causes(mut text: String, err: &(dyn Error + 'static)) -> String {
    for cause in chain(err).skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

/// `err` and its sources as one line, each distinct part once.
pub fn display_chain(err: &(dyn Error + 'static)) -> String {
    with_causes(err.to_string(), err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn walks_the_chain_once() {
        let err = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert!(is_caused_by::<std::io::Error>(&err));
        assert!(!is_caused_by::<std::fmt::Error>(&err));
        assert_eq!(display_chain(&err), "outer: refused");
        assert_eq!(
            with_causes("call failed: refused".into(), &err),
            "call failed: refused"
        );
    }
}
