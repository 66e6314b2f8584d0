//! One upstream MCP server, reached as a child process over stdio or at a Streamable HTTP URL,
//! through the official SDK's client.
//!
//! A child process never outlives the gateway: it is killed when the connection is dropped, and
//! the kernel kills it if the gateway dies without dropping it (`PR_SET_PDEATHSIG`). Its
//! environment is the file's `env` plus `PATH` and `HOME`, nothing else of the gateway's (no
//! tokens or keys leak to a third-party server).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, JsonObject, Tool};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};

use super::GatewayError;
use super::config::Reach;

/// Marks the upstream's tool list stale when it says it changed.
#[derive(Clone)]
struct Watcher {
    stale: Arc<AtomicBool>,
}

impl ClientHandler for Watcher {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::default()
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.stale.store(true, Ordering::SeqCst);
    }
}

/// A connected upstream.
pub struct Upstream {
    /// Its name in the config.
    pub name: String,
    client: RunningService<RoleClient, Watcher>,
    stale: Arc<AtomicBool>,
}

impl Upstream {
    /// Connects (spawning the child for a command) and completes the MCP handshake.
    pub async fn connect(name: &str, reach: &Reach) -> Result<Self, GatewayError> {
        let stale = Arc::new(AtomicBool::new(false));
        let watcher = Watcher {
            stale: Arc::clone(&stale),
        };
        let failed = |e: String| GatewayError::Upstream {
            server: name.to_owned(),
            message: e,
        };
        let client = match reach {
            Reach::Command { argv, env } => {
                let (program, args) = argv
                    .split_first()
                    .ok_or_else(|| failed("an empty command".into()))?;
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args).env_clear().kill_on_drop(true);
                for var in ["PATH", "HOME"] {
                    if let Ok(v) = std::env::var(var) {
                        cmd.env(var, v);
                    }
                }
                cmd.envs(env);
                die_with_parent(&mut cmd);
                let (transport, _) = TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .map_err(|e| failed(format!("cannot start `{program}`: {e}")))?;
                watcher
                    .serve(transport)
                    .await
                    .map_err(|e| failed(format!("handshake failed: {e}")))?
            }
            Reach::Url(url) => {
                // The HTTP client's TLS runs on `ring` (see the workspace manifest); a provider
                // installed already (by the embedding program) is kept.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let transport = StreamableHttpClientTransport::from_uri(url.as_str());
                watcher
                    .serve(transport)
                    .await
                    .map_err(|e| failed(format!("handshake with {url} failed: {e}")))?
            }
        };
        Ok(Self {
            name: name.to_owned(),
            client,
            stale,
        })
    }

    /// Every tool it lists now; clears the stale mark.
    pub async fn tools(&self) -> Result<Vec<Tool>, GatewayError> {
        self.stale.store(false, Ordering::SeqCst);
        self.client
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| GatewayError::Upstream {
                server: self.name.clone(),
                message: format!("tools/list failed: {e}"),
            })
    }

    /// Whether it said its tool list changed since [`Upstream::tools`] last read it.
    pub fn stale(&self) -> bool {
        self.stale.load(Ordering::SeqCst)
    }

    /// Calls `tool` with `arguments`, giving up after `timeout` when one is set.
    pub async fn call(
        &self,
        tool: &str,
        arguments: JsonObject,
        timeout: Option<Duration>,
    ) -> Result<CallToolResult, String> {
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let call = self.client.peer().call_tool(params);
        let result = match timeout {
            Some(t) => tokio::time::timeout(t, call)
                .await
                .map_err(|_| format!("timed out after {} ms", t.as_millis()))?,
            None => call.await,
        };
        result.map_err(|e| e.to_string())
    }
}

/// Asks the kernel to kill the child when the thread that spawned it (a runtime worker, which
/// lives as long as the gateway) goes away, so a killed gateway leaves no server behind.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls `prctl`, which is
    // async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
