//! `arbiter mcp-gateway`: the MCP gateway (see `runtime::gateway`) over stdio, or over Streamable
//! HTTP with `--listen`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args as ClapArgs;
use miette::{IntoDiagnostic, miette};
use runtime::gateway::{Gateway, config, doors};
use runtime::service::auth::{Caller, Tokens};
use runtime::store::{InMemoryStore, SessionStore, SigningKey};

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    policy_set: super::policy_set::PolicyArgs,
    /// Keep sessions in `sqlite:PATH` (audit them with `arbiter audit verify`); without it, in
    /// memory.
    #[arg(long)]
    store: Option<String>,
    /// The gateway's config: the principal and the upstream servers (`${NAME}` in it is the
    /// environment variable `NAME`).
    #[arg(long)]
    config: PathBuf,
    /// Serve Streamable HTTP here (`127.0.0.1:PORT`) at `/mcp`, beside the decision API, instead
    /// of one client on stdio.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// With `--listen`: the tokens file naming each client's tenant and user.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// How long a call needing approval waits for one given through the HTTP API when the client
    /// cannot be asked (no elicitation); 0 denies at once.
    #[arg(long, default_value_t = 0)]
    approval_wait_ms: u64,
}

pub fn run(args: &Args, key: Option<SigningKey>) -> miette::Result<ExitCode> {
    let loaded = config::load(&args.config, &|k| std::env::var(k).ok())?;
    let tokens = match &args.tokens {
        Some(path) => Tokens::load(path)?,
        None => Tokens::default(),
    };
    let store: Arc<dyn SessionStore> = match &args.store {
        Some(s) => super::audit::store_option(s, key)?,
        None => Arc::new(InMemoryStore::default()),
    };
    let policies = args.policy_set.source();
    let stdio_caller = match (&args.listen, &loaded.file.principal) {
        (Some(_), _) => None,
        (None, Some(p)) if !p.tenant.is_empty() && !p.user.is_empty() => Some(Caller {
            tenant: p.tenant.clone(),
            user: p.user.clone(),
            admin: false,
        }),
        (None, _) => {
            return Err(miette!(
                "{}: over stdio the config's [principal] must name the tenant, user, agent and budget the client acts as",
                args.config.display()
            ));
        }
    };
    // One stdio client is served best on one thread (no cross-thread wake-ups per message, see the
    // `mcp_gateway` benchmark); HTTP clients get every core.
    let rt = match args.listen {
        Some(_) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
    .into_diagnostic()?;
    rt.block_on(async move {
        // The packs may name the upstream tools' actions: they load once the tools are known.
        let gateway = Gateway::start(
            policies,
            tokens,
            store,
            loaded,
            Duration::from_millis(args.approval_wait_ms),
        )
        .await
        .map_err(|e| miette!("{e}"))?;
        // Approvals expire unanswered, and ended sessions leave memory, as under `serve`.
        let _sweep = gateway.service().spawn_expiry(Duration::from_millis(500));
        for left in gateway.left_out() {
            eprintln!("warning: not exposed: {}: {}", left.tool, left.reason);
        }
        eprintln!(
            "arbiter mcp-gateway: {} tool(s) from {} server(s) (bundle {})",
            gateway.catalog().tools.len(),
            gateway
                .catalog()
                .tools
                .values()
                .map(|e| &e.server)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            gateway.service().bundle()
        );
        match (args.listen, stdio_caller) {
            (Some(addr), _) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| miette!("cannot listen on {addr}: {e}"))?;
                let addr = listener.local_addr().into_diagnostic()?;
                eprintln!("listening on http://{addr}{}", doors::MCP_PATH);
                axum::serve(listener, doors::router(gateway))
                    .with_graceful_shutdown(async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await
                    .into_diagnostic()
            }
            (None, Some(caller)) => doors::stdio(gateway, caller)
                .await
                .map_err(|e| miette!("{e}")),
            (None, None) => Err(miette!("no caller for stdio")),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
