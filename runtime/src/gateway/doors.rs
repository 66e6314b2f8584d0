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
    let running = connection
        .clone()
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the client's handshake failed: {e}"))?;
    let waited = running
        .waiting()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    connection.close().await;
    waited
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
