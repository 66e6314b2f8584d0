//! `arbiter serve`: the decision API over HTTP (see `runtime::service`), and `arbiter token`, which
//! makes a bearer token and the hashed line the tokens file keeps.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args as ClapArgs;
use miette::{IntoDiagnostic, miette};
use runtime::service::auth::{self, Tokens};
use runtime::service::{ClusterConfig, Service, http};
use runtime::store::{InMemoryStore, SessionStore, SigningKey};

#[derive(ClapArgs)]
pub struct Args {
    /// Where to listen (loopback unless you mean otherwise).
    #[arg(long, default_value = "127.0.0.1:8700")]
    addr: SocketAddr,
    #[command(flatten)]
    policy_set: super::policy_set::PolicyArgs,
    /// Keep sessions in `sqlite:PATH` (they survive a restart) or `postgres://...` (several
    /// instances may share it); without it, in memory.
    #[arg(long)]
    store: Option<String>,
    /// With a PostgreSQL store: this instance's name in the session leases (default: host name
    /// and process id). Unique among the instances sharing the store.
    #[arg(long)]
    instance: Option<String>,
    /// With a PostgreSQL store: how long a session's lease lives unless renewed (ms); a hosted
    /// run of an instance that died is taken over by another within this and a sweep.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(300..))]
    lease_ms: u64,
    /// The tokens file (TOML, hashed tokens; see `arbiter token`). Without it no request is
    /// authorized.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Register an agent file for hosted runs (`POST /v1/runs` with `"agent": NAME`); repeatable.
    #[arg(long = "agent", value_name = "NAME=FILE")]
    agents: Vec<String>,
    /// Export traces to this OTLP/HTTP endpoint (`http://127.0.0.1:4318`): a span per session,
    /// model call and tool call, decisions as span events.
    #[arg(long)]
    otlp: Option<String>,
}

#[derive(ClapArgs)]
pub struct TokenArgs {
    /// The tenant the token acts in.
    #[arg(long)]
    tenant: String,
    /// The user it acts as.
    #[arg(long)]
    user: String,
    /// It may reload policies.
    #[arg(long)]
    admin: bool,
    /// Append the hashed entry to this tokens file (created if missing); without it, the entry is
    /// printed to stderr.
    #[arg(long)]
    file: Option<PathBuf>,
}

pub fn run(args: &Args, key: Option<SigningKey>) -> miette::Result<ExitCode> {
    let tokens = match &args.tokens {
        Some(path) => Tokens::load(path)?,
        None => Tokens::default(),
    };
    if tokens.is_empty() {
        eprintln!("warning: no tokens: every request will be refused (see `arbiter token`)");
    }
    let (store, database): (Arc<dyn SessionStore>, _) = match &args.store {
        Some(s) => super::audit::store_and_database(s, key)?,
        None => (Arc::new(InMemoryStore::default()), None),
    };
    let policies = args.policy_set.source();
    let mut service = Service::new(policies, tokens, store).map_err(|e| miette!("{e}"))?;
    let instance = args.instance.clone().unwrap_or_else(default_instance);
    if let Some(database) = database {
        service = service
            .clustered(ClusterConfig {
                store: database,
                instance: instance.clone(),
                lease: std::time::Duration::from_millis(args.lease_ms),
            })
            .map_err(|e| miette!("{e}"))?;
    }
    let provider = match &args.otlp {
        Some(url) => {
            use opentelemetry::trace::TracerProvider as _;
            let provider = runtime::spans::otlp(url).map_err(|e| miette!("--otlp: {e}"))?;
            let recorder = runtime::spans::SpanRecorder::new(provider.tracer("arbiter"));
            service = service.traced(Arc::new(recorder));
            Some(provider)
        }
        None => None,
    };
    for spec in &args.agents {
        let (name, file) = spec
            .split_once('=')
            .ok_or_else(|| miette!("--agent takes NAME=FILE, got `{spec}`"))?;
        let agent =
            runtime::agent_file::load(std::path::Path::new(file), &|k| std::env::var(k).ok())?;
        service = service.host(name, agent.into());
    }
    let rt = http::executor().into_diagnostic()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|e| miette!("cannot listen on {}: {e}", args.addr))?;
        let addr = listener.local_addr().into_diagnostic()?;
        eprintln!(
            "arbiter serving on http://{addr} (bundle {}); OpenAPI at /openapi.json",
            service.bundle()
        );
        let resumed = service.resume_hosted().map_err(|e| miette!("{e}"))?;
        if resumed > 0 {
            eprintln!("resumed {resumed} hosted run(s) interrupted by the last stop");
        }
        reload_on_sighup(service.clone());
        let _expiry = service.spawn_expiry(std::time::Duration::from_millis(500));
        let _cluster = service.spawn_cluster();
        axum::serve(listener, http::router(service))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .into_diagnostic()
    })?;
    if let Some(provider) = provider {
        // Whatever is still batched goes out before exit.
        if let Err(e) = provider.shutdown() {
            eprintln!("warning: traces not all exported: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `host:pid`: unique among live instances, and different after a restart.
fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "arbiter".into());
    format!("{host}:{}", std::process::id())
}

/// SIGHUP reloads the policies, as the admin endpoint does; a set that does not load is reported
/// and the old one keeps serving.
fn reload_on_sighup(service: Service) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        eprintln!("warning: SIGHUP cannot be caught; reload with POST /v1/admin/reload");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match service.reload() {
                Ok(r) => eprintln!(
                    "policies reloaded: bundle {} (changed: {})",
                    r.bundle, r.changed
                ),
                Err(e) => eprintln!("policies not reloaded: {e}"),
            }
        }
    });
}

pub fn token(args: &TokenArgs) -> miette::Result<ExitCode> {
    let token = auth::generate().map_err(|e| miette!("no randomness from the OS: {e}"))?;
    let entry = format!(
        "[[token]]\nsha256 = \"{}\"\ntenant = {:?}\nuser = {:?}\nadmin = {}\n",
        auth::hash(&token),
        args.tenant,
        args.user,
        args.admin
    );
    match &args.file {
        Some(path) => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| miette!("cannot open {}: {e}", path.display()))?;
            writeln!(f, "{entry}").map_err(|e| miette!("cannot write {}: {e}", path.display()))?;
        }
        None => eprint!("add to the tokens file:\n{entry}"),
    }
    // The token itself is printed once, on stdout, and kept nowhere.
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
