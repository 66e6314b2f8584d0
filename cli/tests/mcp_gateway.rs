//! `arbiter mcp-gateway` as a process, as a desktop assistant runs it: an rmcp client starts it
//! over stdio, the npm filesystem server behind it; the store it wrote verifies and rechecks; the
//! server it started dies with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::json;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A folder to guard (`work/` in a fresh directory), and the example config, which takes it from
/// `WORKSPACE` (see [`with_env`]).
fn setup(test: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("arbiter-cli-mcp-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("secret")).unwrap();
    std::fs::write(work.join("notes.txt"), "quarterly numbers\n").unwrap();
    let servers = repo().join("target/mcp-servers/node_modules");
    assert!(servers.is_dir(), "run examples/mcp/setup.sh first");
    (dir, repo().join("examples/mcp/gateway.toml"))
}

/// The example config's environment for the folder `dir`.
fn example_env(dir: &Path) -> [(&'static str, PathBuf); 2] {
    [
        ("WORKSPACE", dir.join("work")),
        (
            "MCP_SERVERS",
            repo().join("target/mcp-servers/node_modules"),
        ),
    ]
}

fn gateway_args(config: &Path, store: &Path) -> Vec<String> {
    vec![
        "mcp-gateway".into(),
        "--policies".into(),
        repo().join("examples/mcp/policies").display().to_string(),
        "--pack".into(),
        "mcp".into(),
        "--config".into(),
        config.display().to_string(),
        "--store".into(),
        format!("sqlite:{}", store.display()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_stdio_sees_results_and_denials_and_the_store_audits() {
    let (dir, config) = setup("stdio");
    let store = dir.join("gateway.db");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_arbiter"));
    cmd.envs(example_env(&dir));
    cmd.args(gateway_args(&config, &store))
        .stderr(Stdio::null());
    let client = ().serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let notes = dir.join("work/notes.txt").display().to_string();
    let call = |name: &str, args: serde_json::Value| {
        CallToolRequestParams::new(name.to_owned())
            .with_arguments(args.as_object().unwrap().clone())
    };
    let read = client
        .peer()
        .call_tool(call("fs__read_text_file", json!({"path": notes})))
        .await
        .unwrap();
    assert_ne!(read.is_error, Some(true));
    let denied = client
        .peer()
        .call_tool(call("fs__read_text_file", json!({"path": "/etc/hostname"})))
        .await
        .unwrap();
    assert_eq!(denied.is_error, Some(true));
    let said = denied.content[0].as_text().unwrap().text.clone();
    assert!(said.contains("mcp.fs.workspace_only"), "{said}");
    client.cancel().await.unwrap();

    let store_arg = format!("sqlite:{}", store.display());
    for audit in ["verify", "recheck"] {
        let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args(["audit", audit, &store_arg])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "audit {audit}: {text}");
        assert!(text.contains("1 session"), "audit {audit}: {text}");
        if audit == "verify" {
            assert!(
                text.contains("1 ended"),
                "the closed connection's session ends: {text}"
            );
        }
    }

    // The recorded session as a scenario: `arbiter replay` gives back exactly the stored events.
    let arbiter = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let export = arbiter(&["audit", "export", &store_arg]);
    let lines: Vec<serde_json::Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let session = lines.iter().find_map(|l| l.get("session")).unwrap();
    let name = format!(
        "{}/{}",
        session["config"]["tenant"].as_str().unwrap(),
        session["config"]["id"].as_str().unwrap()
    );
    let recorded: Vec<&serde_json::Value> = lines.iter().filter_map(|l| l.get("event")).collect();
    let file = dir.join("recorded.toml");
    let policies = repo().join("examples/mcp/policies").display().to_string();
    let out = file.display().to_string();
    arbiter(&[
        "audit",
        "scenario",
        &store_arg,
        &name,
        "--policies",
        &policies,
        "--pack",
        "mcp",
        "--out",
        &out,
    ]);
    let replayed: Vec<serde_json::Value> = arbiter(&["replay", &out, "--events"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replayed.len(), recorded.len());
    for (r, e) in replayed.iter().zip(recorded) {
        assert_eq!(r, e);
    }
    let summary = arbiter(&["replay", &out]);
    assert!(summary.contains("mcp.fs.workspace_only"), "{summary}");
}

/// The pids whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so read after the last `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

/// Killed with SIGKILL, the gateway runs no cleanup: the kernel kills its children. The upstream
/// here is a program that ignores its stdin (it would outlive a parent that merely closed it),
/// still in its handshake when the gateway dies.
#[test]
fn an_upstream_server_does_not_outlive_a_killed_gateway() {
    let (dir, _) = setup("orphans");
    let config = dir.join("stuck.toml");
    std::fs::write(
        &config,
        "[principal]\ntenant = \"acme\"\nuser = \"alice@acme\"\nagent = \"desktop@acme\"\nbudget = \"acme\"\n\n[servers.stuck]\ncommand = [\"sleep\", \"60\"]\n",
    )
    .unwrap();
    let store = dir.join("gateway.db");
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(gateway_args(&config, &store))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let node = loop {
        if let Some(pid) = children(gateway.id()).first() {
            break *pid;
        }
        assert!(Instant::now() < deadline, "the gateway started no server");
        std::thread::sleep(Duration::from_millis(20));
    };
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(node) {
        assert!(
            Instant::now() < deadline,
            "server {node} outlived the gateway"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The official Python SDK's client (pinned `mcp` 2.x, in `target/pyenv`), at 2026-07-28
/// (`server/discover`, approval by an input-required result) and at 2025-11-25 (`initialize`,
/// approval by `elicitation/create`).
#[test]
fn the_python_sdk_client_works_at_both_protocol_versions() {
    let python = repo().join("target/pyenv/bin/python");
    assert!(python.is_file(), "run examples/setup.sh first");
    for (mode, version) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
        let (dir, config) = setup(&format!("python-{mode}"));
        let out = Command::new(&python)
            .envs(example_env(&dir))
            .arg(repo().join("cli/tests/mcp/python_client.py"))
            .args([
                mode,
                &dir.display().to_string(),
                env!("CARGO_BIN_EXE_arbiter"),
            ])
            .args(gateway_args(&config, &dir.join("gateway.db")))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(seen["protocol"], version, "{seen}");
        assert!(
            seen["tools"]
                .as_array()
                .unwrap()
                .contains(&json!("fs__read_text_file"))
        );
        assert_eq!(seen["read"]["error"], false, "{seen}");
        assert_eq!(
            seen["read"]["structured"], true,
            "structuredContent relayed: {seen}"
        );
        assert_eq!(seen["denied"]["error"], true, "{seen}");
        assert!(
            seen["denied"]["text"]
                .as_str()
                .unwrap()
                .contains("mcp.fs.workspace_only")
        );
        assert_eq!(seen["wrote"]["error"], false, "{seen}");
        assert_eq!(seen["asked"], 1, "{seen}");
        assert_eq!(
            std::fs::read_to_string(dir.join("work/from-python.txt")).unwrap(),
            "hi"
        );
    }
}
