//! What the services' descriptors (encoded `FileDescriptorSet`s, as `Server::add_descriptors`
//! takes them) say of each method: the one place they are read for it, by the metrics (each
//! method's `grpc_type`) and the server (which methods take exactly one request message).

use std::collections::HashMap;

use prost::Message;

/// `/package.Service/Method` → its `grpc_type` (`unary`, `client_stream`, `server_stream`,
/// `bidi_stream`).
pub(crate) fn method_types(descriptors: &[&[u8]]) -> HashMap<String, &'static str> {
    let mut types = HashMap::new();
    for fds in descriptors {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*fds) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                for method in &service.method {
                    let kind = match (method.client_streaming(), method.server_streaming()) {
                        (false, false) => "unary",
                        (true, false) => "client_stream",
                        (false, true) => "server_stream",
                        (true, true) => "bidi_stream",
                    };
                    types.insert(format!("/{name}/{}", method.name()), kind);
                }
            }
        }
    }
    types
}

/// The paths of the methods whose request is one message (unary and server-streaming).
pub(crate) fn single_request(descriptors: &[&[u8]]) -> fnv::FnvHashSet<String> {
    method_types(descriptors)
        .into_iter()
        .filter(|(_, kind)| matches!(*kind, "unary" | "server_stream"))
        .map(|(path, _)| path)
        .collect()
}
