//! Your own service on calcmesh, in three programs to copy from:
//! - `notes-server` (`src/bin/notes-server.rs`): the `Notes` service (`proto/notes.proto`) on
//!   the runtime's `Server`, with mutual TLS and an authorisation policy;
//! - `notes-client` (`src/bin/notes-client.rs`): a client of it through `connect`, with an
//!   `ipv4:` target and a service config (a deadline and retries);
//! - `layers` (`src/bin/layers.rs`): a tower layer of your own on the server (a token check)
//!   and on the channel (the token), in one process.
//!
//! This crate holds what they share: the generated code and the service itself.

use std::sync::Mutex;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The generated messages, client and server of `notes.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("notes.v1");

    /// The encoded `FileDescriptorSet` of `notes.proto`, for server reflection.
    pub const DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/notes_descriptor.bin"));
}

use proto::notes_server::{Notes, NotesServer};
use proto::{Added, ListRequest, Note};

/// The notes kept, in memory.
#[derive(Debug, Default)]
pub struct NoteBook {
    notes: Mutex<Vec<String>>,
}

/// The service, ready for `Server::add_service`.
pub fn service() -> NotesServer<NoteBook> {
    NotesServer::new(NoteBook::default())
}

#[tonic::async_trait]
impl Notes for NoteBook {
    async fn add(&self, request: Request<Note>) -> Result<Response<Added>, Status> {
        // The runtime puts what it knows of the connection in every request's extensions.
        let by = request
            .extensions()
            .get::<calcmesh_runtime::tls::PeerInfo>()
            .and_then(|peer| peer.identity.clone())
            .unwrap_or_else(|| "anonymous".to_owned());
        let text = request.into_inner().text;
        if text.is_empty() {
            return Err(Status::invalid_argument("a note needs some text"));
        }
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        notes.push(text);
        Ok(Response::new(Added {
            id: notes.len() as u64,
            by,
        }))
    }

    type ListStream = ReceiverStream<Result<Note, Status>>;

    async fn list(&self, _: Request<ListRequest>) -> Result<Response<Self::ListStream>, Status> {
        let notes = self.notes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            for text in notes {
                if tx.send(Ok(Note { text })).await.is_err() {
                    return; // the caller went away
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
