//! What the MCP gateway adds to a `tools/call`: the official Rust SDK's client calls the npm
//! filesystem server's `read_text_file` directly (a child process over stdio) and through the
//! gateway (a child process over stdio, the server its own child), calls alternating between the
//! two in one run so both see the same machine state. The gateway authorizes each call with the
//! `mcp` pack (path facts, provenance), records it in an in-memory store, forwards it, and records
//! and indexes the result.
//!
//! Printed after criterion's means: p50 and p99 of each over 2,000 alternating pairs, and the
//! added latency at each. Needs `examples/mcp/setup.sh` (the npm servers) and Node.js.
//!
//! `cargo bench -p benches --bench mcp_gateway`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::model::{CallToolRequestParams, MetaObject, RequestMetaObject};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::json;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PAIRS: usize = 2_000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Setup {
    direct: RunningService<RoleClient, ()>,
    gateway: RunningService<RoleClient, ()>,
    file: String,
}

/// An rmcp client of the server `cmd` starts.
async fn connect(cmd: tokio::process::Command) -> RunningService<RoleClient, ()> {
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ().serve(transport).await.unwrap()
}

async fn setup() -> Setup {
    let dir = std::env::temp_dir().join(format!("arbiter-bench-mcp-{}", std::process::id()));
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let file = work.join("notes.txt");
    std::fs::write(&file, "the quarterly numbers are in the shared folder\n").unwrap();
    let server = repo().join(
        "target/mcp-servers/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js",
    );
    assert!(server.is_file(), "run examples/mcp/setup.sh first");
    let mut node = tokio::process::Command::new("node");
    node.arg(&server).arg(&work);
    // The example config, which takes the folder and the servers from the environment.
    let mut gw = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway_stdio"));
    gw.arg(repo().join("examples/mcp/policies"))
        .arg("mcp")
        .arg(repo().join("examples/mcp/gateway.toml"))
        .env("WORKSPACE", &work)
        .env(
            "MCP_SERVERS",
            repo().join("target/mcp-servers/node_modules"),
        );
    let (direct, gateway) = (connect(node).await, connect(gw).await);
    Setup {
        direct,
        gateway,
        file: file.display().to_string(),
    }
}

/// Calls through the gateway so far: every 40 start a new gateway session (`base` ends a session
/// at 50 steps), named in `_meta` as a client names one per conversation.
static CALLS: AtomicUsize = AtomicUsize::new(0);

async fn read(client: &RunningService<RoleClient, ()>, name: &str, file: &str) -> Duration {
    let args = json!({"path": file}).as_object().unwrap().clone();
    let mut params = CallToolRequestParams::new(name.to_owned()).with_arguments(args);
    if name.starts_with("fs__") {
        let n = CALLS.fetch_add(1, Ordering::Relaxed) / 40;
        let mut meta = serde_json::Map::new();
        meta.insert(
            runtime::gateway::SESSION_META.into(),
            json!(format!("bench-{n}")),
        );
        params.meta = Some(RequestMetaObject(MetaObject(meta)));
    }
    let started = Instant::now();
    let r = client.peer().call_tool(params).await.unwrap();
    let took = started.elapsed();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    took
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(setup());
    let mut group = c.benchmark_group("mcp");
    group.bench_function("direct read_text_file", |b| {
        b.to_async(&rt)
            .iter(|| read(&s.direct, "read_text_file", &s.file))
    });
    group.bench_function("gateway fs__read_text_file", |b| {
        b.to_async(&rt)
            .iter(|| read(&s.gateway, "fs__read_text_file", &s.file))
    });
    group.finish();

    let (direct, gateway) = rt.block_on(async {
        let (mut direct, mut gateway) = (Vec::new(), Vec::new());
        for _ in 0..PAIRS {
            direct.push(read(&s.direct, "read_text_file", &s.file).await);
            gateway.push(read(&s.gateway, "fs__read_text_file", &s.file).await);
        }
        (direct, gateway)
    });
    let (mut direct, mut gateway) = (direct, gateway);
    direct.sort();
    gateway.sort();
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        let (d, g) = (percentile(&direct, p), percentile(&gateway, p));
        println!(
            "mcp {name}: direct {:>6.0} µs, through the gateway {:>6.0} µs, added {:>6.0} µs ({PAIRS} alternating pairs)",
            d.as_secs_f64() * 1e6,
            g.as_secs_f64() * 1e6,
            (g.as_secs_f64() - d.as_secs_f64()) * 1e6
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
