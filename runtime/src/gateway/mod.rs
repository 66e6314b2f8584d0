//! `arbiter mcp-gateway`: an MCP server between an MCP client (a desktop assistant, an IDE, an
//! agent framework) and the MCP servers it uses, where every `tools/call` is authorized by Cedar,
//! recorded, and provenance-checked before it is forwarded.
//!
//! The contract:
//! - On start every upstream's tools are listed and registered as tools of the kernel
//!   (`<server>__<tool>`, one Cedar action each with a typed `context.input`; see [`catalog`]), and
//!   the policies are validated against them; a start whose policies do not validate fails. A
//!   server that says its tool list changed is re-read, and the policies re-validated, before its
//!   next call; a list the policies do not validate against is not taken (the old one stays).
//! - A gateway session is a session of the [`Service`]: the same kernel steps, events and store as
//!   `arbiter serve`, so `audit verify` and `audit recheck` hold for it. A call is a `call_tool`
//!   step; only an allowing decision's effect is forwarded, with the arguments as decided (paths
//!   canonical); the result comes back as `tool_returned`, so its text is indexed for provenance and
//!   its tool's labels join the session's.
//! - A denial is a tool result with `isError: true` naming the policies (the model can read why);
//!   an argument the schema does not declare is refused before any policy runs.
//! - `tools/list` shows a tool only if some call to it could be permitted for the caller's agent
//!   ([`kernel::Deployment::may_call`]); every call is still decided on its own.
//!
//! Files: this one holds [`Gateway`] (start, catalog refresh); `config` the file; `catalog` tools
//! as kernel tools; `upstream` the SDK client of one server; `handler` the SDK server facing the
//! client (sessions, calls, approvals by elicitation); `doors` stdio and Streamable HTTP.

pub mod catalog;
pub mod config;
pub mod doors;
mod handler;
pub mod upstream;

pub use handler::{Connection, REQUEST_META, SESSION_HEADER, SESSION_META};

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use kernel::{Source, ToolSpec};
use thiserror::Error;

use crate::service::auth::Tokens;
use crate::service::{PolicySource, Service};
use crate::store::SessionStore;
use catalog::Catalog;
use config::{Loaded, Principal};
use upstream::Upstream;

/// Why the gateway cannot start or go on.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// An upstream server could not be reached or answered badly.
    #[error("upstream `{server}`: {message}")]
    Upstream {
        /// The server's name in the config.
        server: String,
        /// What happened.
        message: String,
    },
    /// The policies do not validate against the upstream tools.
    #[error("the policies do not validate against the upstream tools: {0}")]
    Policies(String),
}

/// A tool an upstream lists that the gateway does not expose, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// Its gateway name.
    pub tool: String,
    /// Why Arbiter cannot type it.
    pub reason: String,
}

/// The gateway: upstream connections, the tool catalog, and the service that decides and records.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    service: Service,
    upstreams: Vec<Upstream>,
    config: Loaded,
    schema: Source,
    catalog: RwLock<Arc<Catalog>>,
    left_out: RwLock<Vec<LeftOut>>,
    /// Serializes refreshes of the catalog.
    refreshing: tokio::sync::Mutex<()>,
    /// Sessions this gateway has opened, by tenant and id.
    opened: Mutex<HashSet<(String, String)>>,
    /// How long a call waits for an approval given through the HTTP API when the client cannot
    /// be asked (zero: deny at once).
    approval_wait: std::time::Duration,
}

impl Gateway {
    /// Connects to every upstream in `config`, registers their tools beside the packs of
    /// `policies`, and opens the service over `store` that decides and records every call; fails
    /// if the policies do not validate against the tools.
    pub async fn start(
        mut policies: PolicySource,
        tokens: Tokens,
        store: Arc<dyn SessionStore>,
        config: Loaded,
        approval_wait: std::time::Duration,
    ) -> Result<Self, GatewayError> {
        let schema = kernel::pack::read(&policies.root.join("schema.cedarschema"))
            .map_err(|e| GatewayError::Policies(e.to_string()))?;
        let mut upstreams = Vec::new();
        for (name, reach, _) in &config.servers {
            upstreams.push(Upstream::connect(name, reach).await?);
        }
        let (catalog, left_out) =
            read_catalog(&upstreams, &config, &schema, &Catalog::default(), true).await?;
        policies.tools = catalog.specs();
        let service = Service::new(policies, tokens, store)
            .map_err(|e| GatewayError::Policies(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                service,
                upstreams,
                config,
                schema,
                catalog: RwLock::new(Arc::new(catalog)),
                left_out: RwLock::new(left_out),
                refreshing: tokio::sync::Mutex::new(()),
                opened: Mutex::new(HashSet::new()),
                approval_wait,
            }),
        })
    }

    /// The service deciding and recording the gateway's sessions.
    pub fn service(&self) -> &Service {
        &self.inner.service
    }

    /// Who a stdio client acts as, from the config.
    pub fn principal(&self) -> Option<&Principal> {
        self.inner.config.file.principal.as_ref()
    }

    /// The tools exposed now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner
            .catalog
            .read()
            .map_or_else(|p| Arc::clone(&p.into_inner()), |c| Arc::clone(&c))
    }

    /// Upstream tools not exposed, with why.
    pub fn left_out(&self) -> Vec<LeftOut> {
        self.inner
            .left_out
            .read()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Re-reads the tool lists of the upstreams that said theirs changed and re-registers the
    /// tools; the new catalog is taken only if the policies validate against it.
    pub async fn refresh(&self) -> Result<(), GatewayError> {
        if !self.inner.upstreams.iter().any(Upstream::stale) {
            return Ok(());
        }
        let _one = self.inner.refreshing.lock().await;
        let inner = &self.inner;
        let (next, left_out) = read_catalog(
            &inner.upstreams,
            &inner.config,
            &inner.schema,
            &self.catalog(),
            false,
        )
        .await?;
        inner
            .service
            .reload_tools(next.specs())
            .map_err(|e| GatewayError::Policies(e.to_string()))?;
        if let Ok(mut c) = inner.catalog.write() {
            *c = Arc::new(next);
        }
        if let Ok(mut l) = inner.left_out.write() {
            *l = left_out;
        }
        Ok(())
    }

    fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.inner.upstreams.iter().find(|u| u.name == name)
    }
}

/// The catalog the upstreams make: every upstream's tools re-read with `all`, else only those of
/// upstreams marked stale (the others' entries kept from `previous`).
async fn read_catalog(
    upstreams: &[Upstream],
    config: &Loaded,
    schema: &Source,
    previous: &Catalog,
    all: bool,
) -> Result<(Catalog, Vec<LeftOut>), GatewayError> {
    let mut next = Catalog::default();
    let mut left_out = Vec::new();
    for (upstream, (_, _, server)) in upstreams.iter().zip(&config.servers) {
        if !all && !upstream.stale() {
            for (name, e) in previous
                .tools
                .iter()
                .filter(|(_, e)| e.server == upstream.name)
            {
                next.tools.insert(name.clone(), e.clone());
            }
            continue;
        }
        for tool in upstream.tools().await? {
            let entry = catalog::entry(&upstream.name, server, &tool);
            match typable(schema, &entry.spec) {
                Ok(()) => {
                    next.tools.insert(entry.spec.name.clone(), entry);
                }
                Err(reason) => left_out.push(LeftOut {
                    tool: entry.spec.name.clone(),
                    reason,
                }),
            }
        }
    }
    Ok((next, left_out))
}

/// Whether the kernel can register `spec` at all (its schema typed for Cedar), judged on the
/// schema alone so one untypable tool does not keep the others out.
fn typable(schema: &Source, spec: &ToolSpec) -> Result<(), String> {
    kernel::Deployment::builder(schema.clone())
        .tool(spec.clone(), format!("tool `{}`", spec.name))
        .build()
        .map(|_| ())
        .map_err(|e| {
            e.0.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
}
