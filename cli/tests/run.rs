//! `arbiter run` end to end: a live session against the fake model over HTTP, Ctrl-C cancelling
//! it cleanly (exit 130, no orphan tool process), and agent-file mistakes reported with locations.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../eval/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eval::fake_model::{FakeModel, Script};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("arbiter-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tools")).expect("mkdir");
    dir
}

fn agent_file(dir: &Path, endpoint: &str, tools: &str) -> PathBuf {
    let policies = common::repo().join("policies");
    let text = format!(
        r#"policies = "{}"
packs = ["support"]
tenant = "shopco"
user = "carol@shopco"
agent = "support@shopco"
budget = "shopco"
mode = "enforce"
prompt = "Where is ord-1001?"
tick_ms = 50

[model]
entity = "small"
endpoint = "{endpoint}"
name = "fake"
{tools}"#,
        policies.display()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write");
    path
}

/// An agent file whose `lookup_order` is a Python tool answering "delivered", in scratch `name`.
fn lookup_agent(name: &str, server: &FakeModel) -> PathBuf {
    let dir = scratch(name);
    std::fs::write(
        dir.join("tools/lookup.py"),
        "import json,sys\nprint(json.dumps({'status': 'delivered', **json.load(sys.stdin)}))\n",
    )
    .expect("write");
    agent_file(
        &dir,
        &server.base_url(),
        "[tools.lookup_order]\ncommand = [\"python3\", \"tools/lookup.py\"]\n",
    )
}

async fn fake(script: &str) -> FakeModel {
    let script: Script = toml::from_str(script).expect("script");
    FakeModel::start(script, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind")
}

const LOOKUP: &str = r#"
[[reply]]
tool_calls = [{ name = "lookup_order", arguments = { order_id = "ord-1001" } }]
[[reply]]
content = "It was delivered."
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_prints_its_events_and_exits_zero() {
    let server = fake(LOOKUP).await;
    let agent = lookup_agent("ok", &server);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args(["run", agent.to_str().unwrap_or_default(), "--jsonl"])
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The printed log is a complete, verifiable chain ending in the answer.
    let summary = kernel::event::verify_jsonl(&stdout);
    assert!(summary.is_ok(), "{summary:?}");
    assert!(stdout.contains("\"kind\":\"tool_returned\""));
    assert!(stdout.contains("\"status\":\"delivered\""));
    assert!(stdout.contains("It was delivered."));
}

/// `arbiter run --otlp`: the run's trace reaches an OTLP receiver (built on the
/// `opentelemetry-proto` types): the session span and its model and tool children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_sends_its_trace_to_an_otlp_receiver() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use std::sync::{Arc, Mutex};
    let spans: Arc<Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>> = Arc::default();
    let sink = Arc::clone(&spans);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        sink.lock().unwrap().extend(ss.spans);
                    }
                }
                Vec::<u8>::new()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let server = fake(LOOKUP).await;
    let agent = lookup_agent("otlp", &server);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args([
                "run",
                agent.to_str().unwrap_or_default(),
                "--otlp",
                &endpoint,
            ])
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    receiver.abort();
    let spans = spans.lock().unwrap().clone();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no `{name}` among {names:?}"))
    };
    let root = find("invoke_agent support@shopco");
    for child in [find("chat small"), find("execute_tool lookup_order")] {
        assert_eq!(child.trace_id, root.trace_id);
        assert_eq!(child.parent_span_id, root.span_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_session_kills_the_tool_and_exits_130() {
    let server = fake(LOOKUP).await;
    let dir = scratch("sigint");
    let pidfile = dir.join("tool.pid");
    std::fs::write(
        dir.join("tools/hang.py"),
        format!(
            "import os,time\nopen({:?}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n",
            pidfile.display().to_string()
        ),
    )
    .expect("write");
    let agent = agent_file(
        &dir,
        &server.base_url(),
        "[tools.lookup_order]\ncommand = [\"python3\", \"tools/hang.py\"]\n",
    );
    let result = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args(["run", agent.to_str().unwrap_or_default()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        // Wait until the tool runs, then interrupt.
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            let started = line.contains("tool_called");
            seen.push(line);
            if started {
                break;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pidfile.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let tool_pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
        let sent = Instant::now();
        let kill = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        assert!(kill.is_ok_and(|s| s.success()));
        seen.extend(lines.map_while(Result::ok));
        let status = child.wait().expect("wait");
        (status.code(), seen, tool_pid, sent.elapsed())
    })
    .await
    .expect("join");
    let (code, lines, tool_pid, took) = result;
    assert_eq!(code, Some(130), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cancelled") && l.contains("Ctrl-C")),
        "{lines:#?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The hung tool's process is gone (kill(pid, 0) fails once it is reaped).
    let pid = tool_pid.trim();
    assert!(!pid.is_empty(), "the tool never started");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = Command::new("kill")
            .args(["-0", pid])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !alive {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tool process {pid} outlived the session"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn agent_file_mistakes_are_located() {
    let dir = scratch("bad");
    for (tools, says) in [
        (
            "[tools.teleport]\ncommand = [\"true\"]\n",
            "`teleport` is not a registered tool",
        ),
        (
            "[tools.lookup_order]\ncommand = [\"true\"]\nurl = \"http://x\"\n",
            "exactly one of `command` and `url`",
        ),
        (
            "[tools.lookup_order]\ncommand = [\"true\"]\ncredentials = { T = \"ARBITER_TEST_SURELY_UNSET\" }\n",
            "`ARBITER_TEST_SURELY_UNSET`, which is not set",
        ),
        (
            "[tools.lookup_order]\ncomand = [\"true\"]\n",
            "unknown field `comand`",
        ),
    ] {
        let agent = agent_file(&dir, "http://127.0.0.1:9/v1", tools);
        let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args(["run", agent.to_str().unwrap_or_default()])
            .env("NO_COLOR", "1")
            .output()
            .expect("runs");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}");
        // miette wraps long messages; compare with the wrapping undone.
        let text = text
            .replace('│', " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(text.contains(says), "missing `{says}` in:\n{text}");
        assert!(text.contains("agent.toml:"), "no location in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_live_run_resumes_from_its_store_with_the_lost_call_in_doubt() {
    let server = fake(LOOKUP).await;
    let dir = scratch("resume");
    let marker = dir.join("first-attempt.pid");
    // The first attempt hangs (and records its pid); a re-run answers at once.
    std::fs::write(
        dir.join("tools/lookup.py"),
        format!(
            "import json,os,sys,time\nargs=json.load(sys.stdin)\nm={:?}\nif not os.path.exists(m):\n    open(m,'w').write(str(os.getpid()))\n    time.sleep(60)\nprint(json.dumps({{'status':'delivered', **args}}))\n",
            marker.display().to_string()
        ),
    )
    .expect("write");
    let agent = agent_file(
        &dir,
        &server.base_url(),
        "[tools.lookup_order]\ncommand = [\"python3\", \"tools/lookup.py\"]\n",
    );
    let store = format!("sqlite:{}", dir.join("live.db").display());
    let out = tokio::task::spawn_blocking(move || {
        let args = |extra: &[&str]| {
            let mut a = vec![
                "run".to_owned(),
                agent.display().to_string(),
                "--store".into(),
                store.clone(),
                "--session".into(),
                "live-1".into(),
            ];
            a.extend(extra.iter().map(|s| (*s).to_owned()));
            a
        };
        let mut first = Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args(args(&[]))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let stdout = first.stdout.take().expect("stdout");
        for line in BufReader::new(stdout).lines() {
            if line.unwrap_or_default().contains("tool_called") {
                break;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !marker.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        first.kill().expect("SIGKILL");
        let _ = first.wait();
        // SIGKILL leaves the hung tool behind (nothing ran to kill it): clean it up.
        let orphan = std::fs::read_to_string(&marker).unwrap_or_default();
        let _ = Command::new("kill").args(["-9", orphan.trim()]).status();

        let resumed = Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args(args(&["--resume", "--jsonl"]))
            .output()
            .expect("resume");
        let verify = Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args(["audit", "recheck", &store])
            .output()
            .expect("recheck");
        (resumed, verify)
    })
    .await
    .expect("join");
    let (resumed, recheck) = out;
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(stdout.contains("\"kind\":\"call_in_doubt\""), "{stdout}");
    assert!(stdout.contains("\"status\":\"delivered\""), "{stdout}");
    assert!(stdout.contains("It was delivered."), "{stdout}");
    let recheck = String::from_utf8_lossy(&recheck.stdout);
    assert!(
        recheck.contains("0 differ, 0 session(s) could not"),
        "{recheck}"
    );
    // The model was asked exactly twice: once before the crash, once after the tool's result.
    assert_eq!(server.requests().len(), 2);
}
