//! Reading one header of a gRPC call's few. `HeaderMap::get` hashes the name (a custom name
//! byte by byte) before it looks; a call carries a handful of headers and its trailers one or
//! two, and at that size comparing the names in order costs a fraction of the hash.

use http::{HeaderMap, HeaderName, HeaderValue};

// gRPC's header names, parsed once: a `&str` name is parsed at every lookup.
pub(crate) static GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
pub(crate) static GRPC_ACCEPT_ENCODING: HeaderName =
    HeaderName::from_static("grpc-accept-encoding");
pub(crate) static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub(crate) static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
pub(crate) static GRPC_MESSAGE_TYPE: HeaderName = HeaderName::from_static("grpc-message-type");
pub(crate) static GRPC_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/grpc");

/// Above this many values a map is searched by hash.
const SCAN_AT_MOST: usize = 8;

/// The first value of `name` in `headers`, as [`HeaderMap::get`] gives it.
pub(crate) fn find<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    if headers.len() > SCAN_AT_MOST {
        return headers.get(name);
    }
    headers
        .iter()
        .find_map(|(key, value)| (key == name).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_get_finds_in_small_and_large_maps() {
        let name = HeaderName::from_static("grpc-status");
        for others in [0, 3, SCAN_AT_MOST, 20] {
            let mut headers = HeaderMap::new();
            for i in 0..others {
                headers.insert(
                    HeaderName::try_from(format!("x-other-{i}")).unwrap(),
                    HeaderValue::from(i),
                );
            }
            assert_eq!(find(&headers, &name), None);
            headers.append(&name, HeaderValue::from_static("0"));
            headers.append(&name, HeaderValue::from_static("13"));
            assert_eq!(find(&headers, &name), headers.get(&name));
            assert_eq!(find(&headers, &name).unwrap(), "0");
        }
    }
}
