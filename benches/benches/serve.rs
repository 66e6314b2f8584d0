//! The decision API over HTTP on loopback: a client asks before each tool call and reports each
//! result, as an agent running elsewhere does. The server runs on the executor `arbiter serve`
//! builds ([`http::executor`]), the clients on a default tokio one beside it; both share this
//! process and the machine's cores (2 here), so the figure is what one box serves to itself.
//!
//! - `serve/one client`: one propose + report round trip, sequential (criterion's time).
//! - `serve/100 clients`: 100 concurrent clients, each opening a session and making 8 tool calls
//!   (propose, report) before completing; printed after the run: HTTP steps per second, decisions
//!   per second (authorizations the kernel made), p50/p99 latency per request, the same inside
//!   the server's handlers (the rest is HTTP, loopback and scheduling), and by kind of request.
//! - `serve/100 clients, 10 ms think time`: the same, each client pausing before each request.
//!
//! `cargo bench -p benches --bench serve`
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
use runtime::service::{PolicySource, Service, http};
use runtime::store::InMemoryStore;
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Time inside the server's handlers (from the request parsed to the response built).
static HANDLED: Mutex<Vec<Duration>> = Mutex::new(Vec::new());

const TOKEN: &str = "bench-token";
const CLIENTS: usize = 100;
const ROUNDS: usize = 8;

struct Client {
    /// Mean pause before each request: the agent acting on the last answer (zero: back to back).
    /// Each pause is drawn uniformly from half to one and a half times it, so clients do not fire
    /// in lockstep.
    think: Duration,
    /// The pause generator's state.
    seed: AtomicUsize,
    http: reqwest::Client,
    base: String,
    latencies: Latencies,
    decisions: Arc<AtomicUsize>,
}

/// Each request's latency, with what it was.
type Latencies = Arc<Mutex<Vec<(Kind, Duration)>>>;

/// What a request asked, for latencies by kind.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Open,
    Propose,
    Report,
    Complete,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Open, Kind::Propose, Kind::Report, Kind::Complete];

    fn name(self) -> &'static str {
        match self {
            Kind::Open => "open",
            Kind::Propose => "propose",
            Kind::Report => "report",
            Kind::Complete => "complete",
        }
    }
}

impl Client {
    async fn post(&self, kind: Kind, path: &str, body: Value) -> Value {
        if !self.think.is_zero() {
            // xorshift: a fresh pause in [think/2, 3·think/2).
            let mut x = self.seed.load(Ordering::Relaxed).max(1);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.seed.store(x, Ordering::Relaxed);
            let micros = self.think.as_micros() as usize;
            let pause = micros / 2 + x % micros.max(1);
            tokio::time::sleep(Duration::from_micros(pause as u64)).await;
        }
        let t = Instant::now();
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        let v: Value = res.json().await.unwrap();
        self.latencies.lock().unwrap().push((kind, t.elapsed()));
        let decided = v["events"]
            .as_array()
            .or_else(|| v["step"]["events"].as_array())
            .map_or(0, |e| {
                e.iter().filter(|e| e.get("decision").is_some()).count()
            });
        self.decisions.fetch_add(decided, Ordering::Relaxed);
        v
    }

    async fn step(&self, kind: Kind, id: &str, intent: Value) -> Value {
        self.post(
            kind,
            &format!("/v1/sessions/{id}/steps"),
            json!({ "intent": intent }),
        )
        .await
    }

    /// One tool call: ask, then report.
    async fn call(&self, id: &str) {
        let asked = self
            .step(
                Kind::Propose,
                id,
                json!({"intent": "call_tool", "tool": "lookup_order", "input": {"order_id": "ord-5"}}),
            )
            .await;
        let call = asked["effects"][0]["call_id"]
            .as_str()
            .expect("allowed")
            .to_owned();
        self.step(
            Kind::Report,
            id,
            json!({"intent": "tool_returned", "call_id": call, "output": {"status": "shipped"}}),
        )
        .await;
    }

    async fn session(&self, id: &str) {
        self.post(
            Kind::Open,
            "/v1/sessions",
            json!({"id": id, "agent": "support@shopco", "budget": "shopco", "request": "Where is ord-5?"}),
        )
        .await;
        for _ in 0..ROUNDS {
            self.call(id).await;
        }
        self.step(
            Kind::Complete,
            id,
            json!({"intent": "complete", "answer": "shipped"}),
        )
        .await;
    }
}

fn bench(c: &mut Criterion) {
    // The clients' executor; the server runs on its own, as `arbiter serve` builds it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = http::executor().unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut tokens = Tokens::default();
    tokens.insert(&hash(TOKEN), "shopco".into(), "carol@shopco".into(), false);
    let policies = PolicySource {
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies"),
        packs: vec!["support".into()],
        tools: Vec::new(),
    };
    let service = Service::new(policies, tokens, Arc::new(InMemoryStore::default())).unwrap();
    let base = server.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let timed = http::router(service).layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| async move {
                let t = Instant::now();
                let res = next.run(req).await;
                HANDLED.lock().unwrap().push(t.elapsed());
                res
            },
        ));
        tokio::spawn(async move { axum::serve(listener, timed).await });
        format!("http://{addr}")
    });
    let client = |latencies: &Latencies, decisions: &Arc<AtomicUsize>| Client {
        think: Duration::ZERO,
        seed: AtomicUsize::new(0),
        http: reqwest::Client::new(),
        base: base.clone(),
        latencies: Arc::clone(latencies),
        decisions: Arc::clone(decisions),
    };
    let next = AtomicUsize::new(0);
    let mut group = c.benchmark_group("serve");

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let decisions = Arc::new(AtomicUsize::new(0));
    let one = client(&latencies, &decisions);
    let id = "one".to_owned();
    rt.block_on(one.post(
        Kind::Open,
        "/v1/sessions",
        json!({"id": id, "agent": "support@shopco", "budget": "shopco", "request": "Where is ord-5?"}),
    ));
    group.bench_function("one client: propose + report", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let one = &one;
            let next = &next;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // A fresh session every 8 calls keeps clear of the step limit.
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let id = format!("one-{}", n / ROUNDS);
                    if n.is_multiple_of(ROUNDS) {
                        one.post(
                            Kind::Open,
                            "/v1/sessions",
                            json!({"id": id, "agent": "support@shopco", "budget": "shopco", "request": "Where is ord-5?"}),
                        )
                        .await;
                    }
                    let t = Instant::now();
                    one.call(&id).await;
                    total += t.elapsed();
                }
                total
            }
        })
    });

    group.sample_size(10);
    let back_to_back = Load::new(|_| client(&Arc::default(), &Arc::default()), Duration::ZERO);
    back_to_back.bench(
        &mut group,
        &rt,
        "100 clients: a session of 8 tool calls each",
        &next,
    );
    // Each client pausing 5 to 15 ms (10 on average) before every request, as an agent does while
    // it acts on an answer (a tool runs, a model thinks): about 10,000 requests/s offered at most.
    let paced = Load::new(
        |_| client(&Arc::default(), &Arc::default()),
        Duration::from_millis(10),
    );
    paced.bench(&mut group, &rt, "100 clients, 10 ms think time", &next);
    group.finish();
    back_to_back.report("100 clients");
    paced.report("100 clients, 10 ms think time");
}

/// 100 clients, each running one session of 8 tool calls per round, all rounds measured together.
struct Load {
    clients: Vec<Arc<Client>>,
    latencies: Latencies,
    decisions: Arc<AtomicUsize>,
    wall: Arc<Mutex<Duration>>,
    /// Time in the server's handlers during this load's runs.
    handled: Mutex<Vec<Duration>>,
}

impl Load {
    /// Clients made by `make`, sharing one record, each pausing `think` on average.
    fn new(make: impl Fn(usize) -> Client, think: Duration) -> Self {
        let latencies: Latencies = Arc::default();
        let decisions: Arc<AtomicUsize> = Arc::default();
        let clients = (0..CLIENTS)
            .map(|i| {
                let mut c = make(i);
                c.latencies = Arc::clone(&latencies);
                c.decisions = Arc::clone(&decisions);
                c.think = think;
                c.seed = AtomicUsize::new(0x9E37_79B9 ^ (i + 1));
                Arc::new(c)
            })
            .collect();
        Self {
            clients,
            latencies,
            decisions,
            wall: Arc::default(),
            handled: Mutex::default(),
        }
    }

    fn bench(
        &self,
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        rt: &tokio::runtime::Runtime,
        name: &str,
        next: &AtomicUsize,
    ) {
        HANDLED.lock().unwrap().clear();
        group.bench_function(name, |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let t = Instant::now();
                for _ in 0..iters {
                    let tasks: Vec<_> = self
                        .clients
                        .iter()
                        .map(|c| {
                            let c = Arc::clone(c);
                            let id = format!("load-{}", next.fetch_add(1, Ordering::Relaxed));
                            tokio::spawn(async move { c.session(&id).await })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                }
                let elapsed = t.elapsed();
                *self.wall.lock().unwrap() += elapsed;
                self.handled
                    .lock()
                    .unwrap()
                    .append(&mut HANDLED.lock().unwrap());
                elapsed
            })
        });
    }

    /// Prints throughput and latency percentiles over every round run, then by kind of request
    /// (a run filtered to other benchmarks prints nothing).
    fn report(&self, label: &str) {
        let all = self.latencies.lock().unwrap().clone();
        if all.is_empty() {
            return;
        }
        let secs = self.wall.lock().unwrap().as_secs_f64();
        let (p50, p99) = percentiles(all.iter().map(|(_, d)| *d).collect());
        println!(
            "{label}: {} requests in {secs:.2} s: {:.0} HTTP steps/s, {:.0} decisions/s; latency p50 {p50:?}, p99 {p99:?}",
            all.len(),
            all.len() as f64 / secs,
            self.decisions.load(Ordering::Relaxed) as f64 / secs,
        );
        let handled = std::mem::take(&mut *self.handled.lock().unwrap());
        if !handled.is_empty() {
            let (p50, p99) = percentiles(handled);
            println!("  in the handlers: p50 {p50:?}, p99 {p99:?}");
        }
        for kind in Kind::ALL {
            let some: Vec<Duration> = all
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, d)| *d)
                .collect();
            let n = some.len();
            let (p50, p99) = percentiles(some);
            println!(
                "  {:<8} {n:>7} requests: p50 {p50:?}, p99 {p99:?}",
                kind.name()
            );
        }
    }
}

/// p50 and p99 of a non-empty sample.
fn percentiles(mut l: Vec<Duration>) -> (Duration, Duration) {
    l.sort_unstable();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    (pct(0.50), pct(0.99))
}

criterion_group!(benches, bench);
criterion_main!(benches);
