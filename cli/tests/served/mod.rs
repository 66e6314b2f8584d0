//! `arbiter token` and `arbiter serve` as processes, for the CLI tests that need a running service.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

pub mod hosted;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A new token for carol@shopco, its hashed entry appended to `tokens`.
pub fn token(tokens: &Path) -> String {
    token_for(tokens, "carol@shopco")
}

/// A new token for `user` (of shopco), its hashed entry appended to `tokens`.
pub fn token_for(tokens: &Path, user: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(["token", "--tenant", "shopco", "--user", user, "--file"])
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
        Self::start_with(tokens, extra, &[])
    }

    /// [`Served::start`] with environment variables set; its stderr after the banner is passed on
    /// (so a failing test shows what the service said).
    pub fn start_with(tokens: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args(["serve", "--addr", "127.0.0.1:0", "--pack", "support"])
            .args(extra)
            .arg("--tokens")
            .arg(tokens)
            .envs(env.iter().copied())
            .current_dir(repo())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let banner = lines.next().unwrap().unwrap();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("[serve] {line}");
            }
        });
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

    /// SIGKILL: no goodbye, no flush.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
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

impl Drop for Served {
    /// A test that fails midway leaves no server behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 request; the status code and the body.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
