//! A `Service` served on a loopback port for a test, and a client for it; shared by the service
//! tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use runtime::service::{Service, http};
use serde_json::Value;

/// A running server and a client; the server stops when this is dropped.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Serves `service` on 127.0.0.1 (a free port).
pub async fn start(service: Service) -> Api {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, http::router(service)).await.unwrap();
    });
    Api {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        server,
    }
}

impl Api {
    /// Sends `req`: the status and the body (JSON when it parses, else the text).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POSTs `body` as JSON (no body when it is `null`).
    pub async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token);
        let req = if body.is_null() { req } else { req.json(&body) };
        self.send(req).await
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let req = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token);
        self.send(req).await
    }
}
