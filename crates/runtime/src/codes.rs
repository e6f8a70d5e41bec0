//! gRPC status codes by the names the spec, service configs and `--fault` use (`UNAVAILABLE`).

use tonic::Code;

/// Every code's name, indexed by its number.
pub const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The spec's name of `code`, e.g. `UNAVAILABLE`.
pub fn name(code: Code) -> &'static str {
    NAMES[code as usize]
}

/// The code named `name` (`"UNAVAILABLE"`), or numbered so (`"14"`).
pub fn from_name(name: &str) -> Option<Code> {
    let number = match NAMES.iter().position(|n| *n == name) {
        Some(i) => i,
        None => name.parse().ok().filter(|n| *n < NAMES.len())?,
    };
    Some(Code::from(number as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for (i, n) in NAMES.iter().enumerate() {
            let code = from_name(n).unwrap();
            assert_eq!(code as usize, i);
            assert_eq!(name(code), *n);
            assert_eq!(from_name(&i.to_string()), Some(code));
        }
        assert_eq!(from_name("Unavailable"), None);
        assert_eq!(from_name("17"), None);
    }
}
