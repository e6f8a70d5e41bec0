//! Reading a call's answer off a response stream, for a client that wants what the wire
//! carried apart — the headers (the response's metadata), the messages, the trailers
//! (`Streaming::trailers`) — where tonic's generated unary methods merge the trailers into the
//! headers and let a wrong number of messages pass.

use tonic::{Status, Streaming};

/// The one message of a call whose answer is one message (unary and client-streaming), read
/// to the end of the stream. An answer of OK with no message, or more than one message, is
/// UNIMPLEMENTED: the gRPC spec's cardinality violation (tonic's unary call answers INTERNAL
/// for the first and drops the extra messages of the second). A failed call is its status.
///
/// # Errors
/// The call's status, when not OK; UNIMPLEMENTED for a wrong number of messages.
pub async fn one_message<T>(stream: &mut Streaming<T>) -> Result<T, Status> {
    let first = stream.message().await?;
    let second = stream.message().await?;
    match (first, second) {
        (Some(message), None) => Ok(message),
        (None, _) => Err(Status::unimplemented(
            "the server answered OK without a response message, to a call that takes exactly one",
        )),
        (Some(_), Some(_)) => Err(Status::unimplemented(
            "the server sent more than one response message, to a call that takes exactly one",
        )),
    }
}
