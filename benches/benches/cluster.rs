//! `arbiter serve` on PostgreSQL, one instance and two, as a load balancer with sticky sessions
//! sees them: the decision API over HTTP on loopback, 100 concurrent clients each running a
//! session of 8 tool calls (propose, report). Each instance is a `Service` on its own tokio
//! runtime (two worker threads) with its own connections, in this one process; the database is
//! the one `ARBITER_PG_URL` names (`.ci/run` and the README say how to start one). Printed after
//! the run: HTTP steps and decisions per second, p50/p99 latency per request, for one instance
//! and for two; then **takeover**: an instance holding a session's lease dies (stops renewing);
//! the other's next proposal for that session waits for the lease to expire and goes on — the
//! time from the death to the answer, against the lease time.
//!
//! `ARBITER_PG_URL=postgresql://... cargo bench -p benches --bench cluster`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use runtime::service::auth::{Tokens, hash};
use runtime::service::{ClusterConfig, PolicySource, Service, http};
use runtime::store::PostgresStore;
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str = "bench-token";
const CLIENTS: usize = 100;
const ROUNDS: usize = 8;
const LEASE: Duration = Duration::from_millis(1000);

#[derive(Default)]
struct Record {
    latencies: Mutex<Vec<Duration>>,
    decisions: AtomicUsize,
    wall: Mutex<Duration>,
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: Value, rec: &Record) -> Value {
    let t = Instant::now();
    let res = http
        .post(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    rec.latencies.lock().unwrap().push(t.elapsed());
    let decided = v["events"].as_array().map_or(0, |e| {
        e.iter().filter(|e| e.get("decision").is_some()).count()
    });
    rec.decisions.fetch_add(decided, Ordering::Relaxed);
    v
}

/// One session of 8 tool calls, then complete.
async fn session(http: &reqwest::Client, base: &str, id: &str, rec: &Record) {
    post(
        http,
        base,
        "/v1/sessions",
        json!({"id": id, "agent": "support@shopco", "budget": "shopco", "request": "Where is ord-5?"}),
        rec,
    )
    .await;
    let path = format!("/v1/sessions/{id}/steps");
    for _ in 0..ROUNDS {
        let asked = post(
            http,
            base,
            &path,
            json!({"intent": {"intent": "call_tool", "tool": "lookup_order", "input": {"order_id": "ord-5"}}}),
            rec,
        )
        .await;
        let call = asked["effects"][0]["call_id"].as_str().unwrap().to_owned();
        post(
            http,
            base,
            &path,
            json!({"intent": {"intent": "tool_returned", "call_id": call, "output": {"status": "shipped"}}}),
            rec,
        )
        .await;
    }
    post(
        http,
        base,
        &path,
        json!({"intent": {"intent": "complete", "answer": "shipped"}}),
        rec,
    )
    .await;
}

/// An instance: a clustered service on its own executor (as `arbiter serve` builds it), serving on
/// a loopback port.
struct Instance {
    /// Kept: the service runs on it.
    _rt: tokio::runtime::Runtime,
    base: String,
}

fn instance(url: &str, name: &str) -> Instance {
    let rt = http::executor().unwrap();
    let mut tokens = Tokens::default();
    tokens.insert(&hash(TOKEN), "shopco".into(), "carol@shopco".into(), false);
    let policies = PolicySource {
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies"),
        packs: vec!["support".into()],
        tools: Vec::new(),
    };
    let store = PostgresStore::open(url).unwrap();
    let base = rt.block_on(async {
        let service = Service::new(policies, tokens, Arc::new(store.clone()))
            .unwrap()
            .clustered(ClusterConfig {
                store: store.clone(),
                instance: name.into(),
                lease: LEASE,
            })
            .unwrap();
        let _cluster = service.spawn_cluster();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, http::router(service)).await });
        format!("http://{addr}")
    });
    Instance { _rt: rt, base }
}

/// A fresh schema; the URL with it as the search path.
fn schema(url: &str) -> String {
    let name = format!("bench_cluster_{}", std::process::id());
    let mut admin = postgres_client(url);
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        ))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{name}")
}

fn postgres_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

fn load(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    driver: &tokio::runtime::Runtime,
    bases: &[String],
    name: &str,
    rec: &Arc<Record>,
    next: &AtomicUsize,
) {
    let http = reqwest::Client::new();
    c.bench_function(name, |b| {
        b.to_async(driver).iter_custom(|iters| {
            let (http, rec) = (http.clone(), Arc::clone(rec));
            async move {
                let t = Instant::now();
                for _ in 0..iters {
                    let tasks: Vec<_> = (0..CLIENTS)
                        .map(|i| {
                            let (http, rec) = (http.clone(), Arc::clone(&rec));
                            let base = bases[i % bases.len()].clone();
                            let id = format!("load-{}", next.fetch_add(1, Ordering::Relaxed));
                            tokio::spawn(async move { session(&http, &base, &id, &rec).await })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                }
                let elapsed = t.elapsed();
                *rec.wall.lock().unwrap() += elapsed;
                elapsed
            }
        })
    });
}

fn report(label: &str, rec: &Record) {
    let mut l = rec.latencies.lock().unwrap().clone();
    l.sort_unstable();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    let secs = rec.wall.lock().unwrap().as_secs_f64();
    println!(
        "{label}: {} requests in {secs:.2} s: {:.0} HTTP steps/s, {:.0} decisions/s; latency p50 {:?}, p99 {:?}",
        l.len(),
        l.len() as f64 / secs,
        rec.decisions.load(Ordering::Relaxed) as f64 / secs,
        pct(0.50),
        pct(0.99),
    );
}

fn bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("ARBITER_PG_URL") else {
        eprintln!("SKIPPED: set ARBITER_PG_URL to a PostgreSQL server to measure the cluster");
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = schema(&url);
    let (a, b) = (instance(&url, "a"), instance(&url, "b"));
    let driver = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let next = AtomicUsize::new(0);
    let mut group = c.benchmark_group("cluster");
    group.sample_size(10);
    let (one, two) = (Arc::new(Record::default()), Arc::new(Record::default()));
    load(
        &mut group,
        &driver,
        std::slice::from_ref(&a.base),
        "one instance: 100 clients, a session of 8 tool calls each",
        &one,
        &next,
    );
    load(
        &mut group,
        &driver,
        &[a.base.clone(), b.base.clone()],
        "two instances: 100 clients, a session of 8 tool calls each",
        &two,
        &next,
    );
    group.finish();
    report("one instance", &one);
    report("two instances", &two);

    // Takeover: a third "instance" takes a session's lease and dies holding it; B's next
    // proposal for it is answered once the lease has expired.
    let http = reqwest::Client::new();
    let rec = Record::default();
    let mut times = Vec::new();
    for i in 0..5 {
        let id = format!("takeover-{i}");
        driver.block_on(post(
            &http,
            &b.base,
            "/v1/sessions",
            json!({"id": id, "agent": "support@shopco", "budget": "shopco", "request": "Where is ord-5?"}),
            &rec,
        ));
        let doomed = PostgresStore::open(&url).unwrap();
        doomed.acquire("shopco", &id, "doomed", LEASE).unwrap();
        let died = Instant::now();
        drop(doomed);
        driver.block_on(post(
            &http,
            &b.base,
            &format!("/v1/sessions/{id}/steps"),
            json!({"intent": {"intent": "call_tool", "tool": "lookup_order", "input": {"order_id": "ord-5"}}}),
            &rec,
        ));
        times.push(died.elapsed());
    }
    times.sort_unstable();
    println!(
        "takeover (lease {LEASE:?}): median {:?}, max {:?} from the holder's death to the next answer",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    drop((a, b));
}

criterion_group!(benches, bench);
criterion_main!(benches);
