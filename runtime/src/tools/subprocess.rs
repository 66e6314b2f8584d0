//! A tool that is a local program: JSON arguments on stdin, JSON result on stdout.
//!
//! The program runs in its own process group with an empty environment except `PATH`, the
//! variables explicitly passed through, and the call's credentials. Dropping the call's future
//! (a timeout, a cancellation) kills the whole group, so a tool that spawned helpers leaves no
//! orphan behind. Exit status 75 (`EX_TEMPFAIL`) reports a retryable failure; any other non-zero
//! status a permanent one.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{Tool, ToolCall, ToolError, ToolFuture, ToolOutput};

/// Exit status meaning "temporary failure, try again" (sysexits.h).
const EX_TEMPFAIL: i32 = 75;
/// Output beyond this many bytes is refused rather than buffered.
const MAX_OUTPUT: u64 = 1 << 20;
/// The `PATH` a tool sees unless configured otherwise.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A local program used as a tool.
#[derive(Debug, Clone)]
pub struct SubprocessTool {
    program: PathBuf,
    args: Vec<String>,
    path: String,
    pass_env: Vec<String>,
    current_dir: Option<PathBuf>,
}

impl SubprocessTool {
    /// Runs `program` with `args`.
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            path: DEFAULT_PATH.into(),
            pass_env: Vec::new(),
            current_dir: None,
        }
    }

    /// Copies the named variables from the driver's environment (e.g. `LANG`); nothing else is.
    pub fn pass_env(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.pass_env.extend(names.into_iter().map(Into::into));
        self
    }

    /// Runs the program in `dir` (by default, the driver's working directory).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    async fn run(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", &self.path)
            .envs(
                self.pass_env
                    .iter()
                    .filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), v))),
            )
            .envs(&call.credentials)
            .env("ARBITER_CALL_ID", &call.call_id)
            .env("ARBITER_SESSION", &call.session)
            .env("ARBITER_IDEMPOTENCY_KEY", call.idempotency_key())
            .env("ARBITER_ATTEMPT", call.attempt.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ToolError::Unavailable(format!("{}: {e}", self.program.display())))?;
        let _group = child.id().map(GroupGuard);
        let input = serde_json::to_vec(&call.input).unwrap_or_default();
        let (mut stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let write = async {
            if let Some(stdin) = stdin.as_mut() {
                // A tool that exits without reading its input is not an error in itself.
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
            }
            drop(stdin);
        };
        let read_out = read_capped(stdout);
        let read_err = read_capped(stderr);
        let ((), out, err, status) = tokio::join!(write, read_out, read_err, child.wait());
        let status = status.map_err(|e| ToolError::Unavailable(e.to_string()))?;
        let out = out?;
        if !status.success() {
            let stderr = String::from_utf8_lossy(&err.unwrap_or_default())
                .trim()
                .to_owned();
            let tail: String = stderr
                .chars()
                .rev()
                .take(500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let code = status.code();
            return Err(ToolError::Failed {
                message: format!(
                    "exit status {}: {tail}",
                    code.map_or("signal".into(), |c| c.to_string())
                ),
                retryable: code == Some(EX_TEMPFAIL),
                cost: 0,
            });
        }
        let value: Value =
            serde_json::from_slice(&out).map_err(|e| ToolError::Malformed(e.to_string()))?;
        Ok(value.into())
    }
}

impl Tool for SubprocessTool {
    fn call(&self, call: ToolCall) -> ToolFuture<'_> {
        Box::pin(self.run(call))
    }
}

async fn read_capped(
    pipe: Option<impl tokio::io::AsyncRead + Unpin>,
) -> Result<Vec<u8>, ToolError> {
    let Some(pipe) = pipe else {
        return Ok(Vec::new());
    };
    let mut buf = Vec::new();
    pipe.take(MAX_OUTPUT + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| ToolError::Malformed(e.to_string()))?;
    if buf.len() as u64 > MAX_OUTPUT {
        return Err(ToolError::Malformed(format!(
            "output exceeds {MAX_OUTPUT} bytes"
        )));
    }
    Ok(buf)
}

/// Kills the tool's whole process group when the call ends or is dropped: helpers it spawned
/// die with it. Killing an already-empty group is harmless.
struct GroupGuard(u32);

#[allow(unsafe_code)]
impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Ok(pgid) = libc::pid_t::try_from(self.0) {
            // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}
