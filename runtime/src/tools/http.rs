//! The HTTP tool adapter: a JSON POST per call, with the tenant's credentials put into headers by
//! the runtime, so the model never sees them.

use reqwest::header::{HeaderName, HeaderValue};

use super::{Tool, ToolCall, ToolError, ToolFuture, ToolOutput};

/// Largest response body accepted, like the subprocess adapter's output cap.
const MAX_BODY: usize = 1 << 20;

/// The one HTTP client setup: rustls on `ring`, the system's roots.
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    // Installing twice is harmless; the first provider installed stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A header filled from one of the call's credentials.
#[derive(Debug, Clone)]
struct CredentialHeader {
    header: HeaderName,
    credential: String,
    prefix: String,
}

/// POSTs the call's arguments as JSON to a URL and takes the JSON it answers as the output.
///
/// Each call carries `Idempotency-Key: <call id>` (stable across retries). Answers: 2xx with a
/// JSON body is the output; 408, 429 and 5xx are retryable failures; other statuses are permanent.
/// A header declared with [`HttpTool::credential_header`] is required: without that credential
/// for the call's tenant the request is not sent at all.
#[derive(Debug, Clone)]
pub struct HttpTool {
    url: String,
    client: reqwest::Client,
    headers: Vec<CredentialHeader>,
}

impl HttpTool {
    /// A tool that POSTs to `url`.
    pub fn new(url: impl Into<String>) -> Result<Self, String> {
        Ok(Self {
            url: url.into(),
            client: http_client()?,
            headers: Vec::new(),
        })
    }

    /// Sends `header: <prefix><value of credential>` on each call, e.g.
    /// `("Authorization", "CRM_TOKEN", "Bearer ")`.
    pub fn credential_header(
        mut self,
        header: &str,
        credential: &str,
        prefix: &str,
    ) -> Result<Self, String> {
        let header = HeaderName::from_bytes(header.as_bytes())
            .map_err(|e| format!("`{header}` is not a header name: {e}"))?;
        self.headers.push(CredentialHeader {
            header,
            credential: credential.to_owned(),
            prefix: prefix.to_owned(),
        });
        Ok(self)
    }

    async fn post(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let mut request = self
            .client
            .post(&self.url)
            .json(&call.input)
            .header("idempotency-key", call.idempotency_key());
        for h in &self.headers {
            let Some(secret) = call.credentials.get(&h.credential) else {
                return Err(ToolError::Unavailable(format!(
                    "no credential `{}` is granted to this tool for tenant `{}`",
                    h.credential, call.tenant
                )));
            };
            let mut value =
                HeaderValue::from_str(&format!("{}{secret}", h.prefix)).map_err(|_| {
                    ToolError::Unavailable(format!(
                        "credential `{}` cannot go in a header",
                        h.credential
                    ))
                })?;
            value.set_sensitive(true);
            request = request.header(h.header.clone(), value);
        }
        let mut response = request.send().await.map_err(|e| ToolError::Failed {
            message: format!("cannot reach {}: {e}", self.url),
            retryable: true,
            cost: 0,
        })?;
        let status = response.status();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    if body.len() + bytes.len() > MAX_BODY {
                        return Err(ToolError::Malformed(format!(
                            "the response is larger than {MAX_BODY} bytes"
                        )));
                    }
                    body.extend_from_slice(&bytes);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(ToolError::Failed {
                        message: format!("the response broke off: {e}"),
                        retryable: true,
                        cost: 0,
                    });
                }
            }
        }
        if !status.is_success() {
            let code = status.as_u16();
            let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(ToolError::Failed {
                message: format!("HTTP {code}: {text}"),
                retryable: code == 408 || code == 429 || status.is_server_error(),
                cost: 0,
            });
        }
        serde_json::from_slice::<serde_json::Value>(&body)
            .map(ToolOutput::from)
            .map_err(|e| ToolError::Malformed(format!("the body is not JSON: {e}")))
    }
}

impl Tool for HttpTool {
    fn call(&self, call: ToolCall) -> ToolFuture<'_> {
        Box::pin(self.post(call))
    }
}
