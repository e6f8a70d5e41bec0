//! Tower layers of your own, on both sides, the way a team adds its own authentication or
//! logging: the server checks a token header before any handler runs (`Server::add_layered`),
//! and the channel adds the token to every call (a `MeshChannel` is a tower service, so any
//! layer wraps it). One process, plaintext on loopback.
//!
//! ```text
//! cargo run -p calcmesh-examples --bin layers
//! ```

use std::convert::Infallible;
use std::task::{Context, Poll};

use calcmesh_examples::proto::Note;
use calcmesh_examples::proto::notes_client::NotesClient;
use calcmesh_runtime::{ClientConfig, Server, ServerConfig, Target, bind, connect};
use tonic::body::Body;
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;

const TOKEN: &str = "x-notes-token";

/// The server's layer: a call without the right token is UNAUTHENTICATED, unseen by the handler.
#[derive(Clone)]
struct RequireToken<S>(S);

impl<S> tower_service::Service<http::Request<Body>> for RequireToken<S>
where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.headers().get(TOKEN).is_none_or(|t| t != "s3cret") {
            let refused = tonic::Status::unauthenticated(format!("no valid {TOKEN} header"));
            return Box::pin(std::future::ready(Ok(refused.into_http())));
        }
        Box::pin(self.0.call(request))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ServerConfig::default();
    let listener = bind("127.0.0.1:0".parse()?, &config)?;
    let target: Target = listener.local_addr()?.to_string().parse()?;
    let server = Server::new(config).add_layered(
        tower::layer::layer_fn(RequireToken),
        calcmesh_examples::service(),
    );
    tokio::spawn(server.serve(listener, std::future::pending()));

    let channel = connect(&target, &ClientConfig::default())?;
    // Without the layer: refused by the server's.
    let bare = NotesClient::new(channel.clone())
        .add(Note {
            text: "hello".into(),
        })
        .await;
    let refused = bare.expect_err("a call without the token is refused");
    println!(
        "without the token: {:?}: {}",
        refused.code(),
        refused.message()
    );

    // With it: the channel's layer adds the token to every call.
    let with_token = ServiceBuilder::new()
        .layer(MapRequestLayer::new(|mut request: http::Request<Body>| {
            request
                .headers_mut()
                .insert(TOKEN, http::HeaderValue::from_static("s3cret"));
            request
        }))
        .service(channel);
    let added = NotesClient::new(with_token)
        .add(Note {
            text: "hello".into(),
        })
        .await?;
    println!("with the token: added note {}", added.into_inner().id);
    Ok(())
}
