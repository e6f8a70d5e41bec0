//! The suite's `Header` lists and gRPC metadata, both ways.

use tonic::metadata::MetadataMap;

use crate::proto::Header;

/// The suite's headers as gRPC metadata. Values go on the wire as given (binary `-bin`
/// values are already base64); a name or value HTTP cannot carry is left out.
pub fn metadata(headers: &[Header]) -> MetadataMap {
    let mut map = http::HeaderMap::new();
    for header in headers {
        let Ok(name) = http::HeaderName::try_from(header.name.as_str()) else {
            continue;
        };
        for value in &header.value {
            if let Ok(value) = http::HeaderValue::try_from(value.as_str()) {
                map.append(name.clone(), value);
            }
        }
    }
    MetadataMap::from_headers(map)
}

/// `metadata` as the suite lists headers: each name once, with all its values in order.
pub fn listed(metadata: &MetadataMap) -> Vec<Header> {
    let headers = metadata.as_ref();
    headers
        .keys()
        .map(|name| Header {
            name: name.as_str().to_owned(),
            value: headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect(),
        })
        .collect()
}
