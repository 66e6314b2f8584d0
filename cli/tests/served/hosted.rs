//! What a test of hosted runs through `arbiter serve` needs: tools as shell scripts, a fake model
//! answering each conversation by its position, and the agent file tying them together.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A child process killed when dropped (a failing test leaves nothing running).
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An executable `sh` script in `dir` that reads its input and runs `body`; its path.
pub fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\ncat > /dev/null\n{body}")).unwrap();
    assert!(
        Command::new("chmod")
            .arg("+x")
            .arg(&path)
            .status()
            .unwrap()
            .success()
    );
    path.display().to_string()
}

/// `arbiter fake-model` answering each conversation by its position: look up ord-1001, refund
/// `cents` of it, answer.
pub fn fake_model(dir: &Path, cents: u64) -> (Killed, String) {
    let script = dir.join("model.toml");
    std::fs::write(
        &script,
        format!(
            r#"per_conversation = true
[[reply]]
tool_calls = [{{ name = "lookup_order", arguments = {{ order_id = "ord-1001" }} }}]
[[reply]]
tool_calls = [{{ name = "issue_refund", arguments = {{ order_id = "ord-1001", amount = {cents}, reason = "arrived broken" }} }}]
[[reply]]
content = "Refunded."
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(["fake-model", "--listen", "127.0.0.1:0", "--script"])
        .arg(&script)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let banner = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("the banner names the address")
        .to_owned();
    (Killed(child), url)
}

/// The support agent file in `dir`: the shipped policies, the fake model at `model_url`, and the
/// two tools as the given programs.
pub fn agent_file(dir: &Path, model_url: &str, lookup: &str, refund: &str) -> PathBuf {
    let agent = dir.join("agent.toml");
    std::fs::write(
        &agent,
        format!(
            r#"policies = "{policies}"
packs = ["support"]
tenant = "shopco"
user = "carol@shopco"
agent = "support@shopco"
budget = "shopco"
mode = "enforce"
prompt = "unused: each run brings its request"

[model]
entity = "small"
endpoint = "{model_url}"
name = "fake"
max_tokens = 256

[tools.lookup_order]
command = ["{lookup}"]

[tools.issue_refund]
command = ["{refund}"]
"#,
            policies = super::repo().join("policies").display(),
        ),
    )
    .unwrap();
    agent
}
