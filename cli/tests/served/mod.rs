//! `arbiter token` and `arbiter serve` as processes, for the CLI tests that need a running service.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A new token for carol@shopco, its hashed entry appended to `tokens`.
pub fn token(tokens: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args([
            "token",
            "--tenant",
            "shopco",
            "--user",
            "carol@shopco",
            "--file",
        ])
        .arg(tokens)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `arbiter serve` on a free loopback port with the support pack and `tokens`, plus `extra`.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT`, as its banner says.
    pub url: String,
}

impl Served {
    pub fn start(tokens: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args(["serve", "--addr", "127.0.0.1:0", "--pack", "support"])
            .args(extra)
            .arg("--tokens")
            .arg(tokens)
            .current_dir(repo())
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
        Self { child, url }
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// SIGINT, then its exit.
    pub fn stop(mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}
