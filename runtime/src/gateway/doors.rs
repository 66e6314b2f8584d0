//! The gateway's two doors: one client over stdio, or any number over Streamable HTTP (beside the
//! decision API of `arbiter serve`, so approvals and event streams are served on the same port).

use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use super::{Connection, Gateway};
use crate::service::auth::Caller;

/// Where the MCP endpoint is mounted.
pub const MCP_PATH: &str = "/mcp";

/// Serves one client on standard input and output until it closes them, acting as `caller`.
/// When the client goes away its sessions end (`completed`), so each is whole in the log.
pub async fn stdio(gateway: Gateway, caller: Caller) -> Result<(), String> {
    let connection = Connection::new(gateway, Some(caller));
    let served = match pipes() {
        Some(pipes) => connection.clone().serve(pipes).await,
        None => connection.clone().serve(rmcp::transport::stdio()).await,
    };
    let running = served.map_err(|e| format!("the client's handshake failed: {e}"))?;
    let waited = running
        .waiting()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    connection.close().await;
    waited
}

/// Standard input and output as non-blocking pipes on the runtime's reactor, when they are pipes
/// (as a client that starts the gateway makes them). Tokio's own `stdin`/`stdout` hand every read
/// and write to a blocking thread, a thread hop per message each way.
fn pipes() -> Option<(
    tokio::net::unix::pipe::Receiver,
    tokio::net::unix::pipe::Sender,
)> {
    use std::os::fd::AsFd;
    let input = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let output = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(input).ok()?;
    let sender = tokio::net::unix::pipe::Sender::from_owned_fd(output).ok()?;
    Some((receiver, sender))
}

/// The MCP endpoint at [`MCP_PATH`] (each request acting as its bearer token) beside the decision
/// API of the gateway's service.
pub fn router(gateway: Gateway) -> axum::Router {
    let service = gateway.service().clone();
    let mcp = StreamableHttpService::new(
        move || Ok(Connection::new(gateway.clone(), None)),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    crate::service::http::router(service).nest_service(MCP_PATH, mcp)
}
