//! `arbiter run`: one live session from an agent file, its events printed as they happen.
//! Ctrl-C cancels the session through the kernel (so the cancellation is authorized and recorded)
//! and exits with 130 once the cancelled event is out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use eval::expect::action_name;
use kernel::event::encode_jsonl;
use kernel::{Event, EventBody, Session, Status};
use miette::{IntoDiagnostic, miette};
use runtime::{Delivery, EventHub};

#[derive(clap::Args)]
pub struct Args {
    /// The agent file.
    file: PathBuf,
    /// The user's request (default: the file's `prompt`).
    #[arg(long)]
    prompt: Option<String>,
    /// Print events as JSONL instead of one readable line each.
    #[arg(long)]
    jsonl: bool,
    /// The session id (default: `run-` and the start time in ms).
    #[arg(long)]
    session: Option<String>,
    /// Record the session durably (`sqlite:PATH`): every step is written before its effects run.
    #[arg(long)]
    store: Option<String>,
    /// Resume the session `--session` from `--store` (after a crash): its log is replayed, a call
    /// that was in flight is declared in doubt, and the run carries on.
    #[arg(long, requires_all = ["store", "session"])]
    resume: bool,
    /// Export the run as an OpenTelemetry trace to this OTLP/HTTP endpoint (see `serve --otlp`).
    #[arg(long)]
    otlp: Option<String>,
}

pub fn run(args: &Args, key: Option<runtime::store::SigningKey>) -> miette::Result<ExitCode> {
    let agent = runtime::agent_file::load(&args.file, &|var| std::env::var(var).ok())?;
    let prompt = args
        .prompt
        .clone()
        .or(agent.prompt.clone())
        .ok_or_else(|| {
            miette!(
                "no prompt: pass --prompt or set `prompt` in {}",
                args.file.display()
            )
        })?;
    let mut config = agent.config.clone();
    config.id = args.session.clone().unwrap_or_else(|| {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("run-{ms}")
    });
    let store = args
        .store
        .as_deref()
        .map(|s| super::audit::store_option(s, key))
        .transpose()?;
    let resume = match (&store, args.resume) {
        (Some(store), true) => {
            let stored = store
                .load(&config.tenant, &config.id)
                .map_err(|e| miette!("cannot resume: {e}"))?;
            config = stored.record.config.clone();
            Some(stored)
        }
        _ => None,
    };
    let user = config.user.clone();
    let session = Session::new(Arc::clone(&agent.deployment), config)
        .map_err(|e| miette!("{}: cannot start a session: {e}", args.file.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()?;
    let jsonl = args.jsonl;
    let traces = match &args.otlp {
        Some(url) => {
            use opentelemetry::trace::TracerProvider as _;
            let provider = runtime::spans::otlp(url).map_err(|e| miette!("--otlp: {e}"))?;
            let recorder = runtime::spans::SpanRecorder::new(provider.tracer("arbiter"));
            Some((provider, recorder))
        }
        None => None,
    };
    // Span times are the session's wall-clock start plus each event's `t_ms`.
    let started_wall_ms = resume.as_ref().map_or_else(
        || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        },
        |s| s.record.started_wall_ms,
    );
    let record = |e: &kernel::event::Event| {
        if let Some((_, recorder)) = &traces {
            recorder.record(e, started_wall_ms);
        }
    };
    let exit = runtime.block_on(async move {
        let hub = EventHub::new(4096);
        let mut events = hub.subscribe();
        let mut rt = agent.runtime;
        if let Some(store) = store {
            rt = rt.store(store);
        }
        let rt = Arc::new(rt);
        let handle = match resume {
            Some(stored) => {
                eprintln!(
                    "resuming {} after {} recorded steps",
                    stored.record.config.id,
                    stored.steps.len()
                );
                rt.resume(session, stored, hub, Some(agent.tick_every))
            }
            None => rt.spawn(session, prompt, hub, Some(agent.tick_every)),
        };
        let mut interrupted = false;
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = poll.tick() => if handle.is_finished() {
                    // Ended without a final event (a refused store write): drain and stop.
                    while let Ok(Delivery::Event(e)) =
                        tokio::time::timeout(std::time::Duration::ZERO, events.next()).await
                    {
                        record(&e);
                        print_event(&e, jsonl);
                    }
                    break;
                },
                delivery = events.next() => match delivery {
                    Delivery::Event(e) => {
                        record(&e);
                        print_event(&e, jsonl);
                        if is_end(&e) {
                            break;
                        }
                    }
                    Delivery::Lagged { missed } => eprintln!("({missed} events not shown)"),
                    Delivery::Closed => break,
                },
                signal = tokio::signal::ctrl_c(), if !interrupted => {
                    signal.into_diagnostic()?;
                    interrupted = true;
                    eprintln!("interrupted: cancelling the session");
                    handle.cancel(&user, "interrupted (Ctrl-C)");
                }
            }
        }
        let outcome = handle.join().await.into_diagnostic()?;
        if let Some(e) = &outcome.store_error {
            return Err(miette!(
                "the store refused a write; the session was stopped: {e}"
            ));
        }
        Ok(match outcome.status {
            Status::Completed => ExitCode::SUCCESS,
            Status::Cancelled => ExitCode::from(130),
            _ => ExitCode::FAILURE,
        })
    });
    if let Some((provider, _)) = traces {
        // The batch still held goes out before exit.
        if let Err(e) = provider.shutdown() {
            eprintln!("warning: traces not all exported: {e}");
        }
    }
    exit
}

fn is_end(e: &Event) -> bool {
    matches!(
        e.body,
        EventBody::Completed { .. }
            | EventBody::Failed { .. }
            | EventBody::Cancelled { .. }
            | EventBody::LimitReached { .. }
    )
}

fn print_event(e: &Event, jsonl: bool) {
    if jsonl {
        print!("{}", encode_jsonl(std::slice::from_ref(e)));
    } else {
        println!("{}", readable(e));
    }
}

/// One event as a line for a person. In `log_only` a denial did not stop anything, so it is
/// marked as what it would have done.
fn readable(e: &Event) -> String {
    let decision = e.decision.as_ref().map_or_else(String::new, |d| {
        let ids: Vec<&str> = d.policies.iter().map(|p| p.id.as_str()).collect();
        let shadow = if d.mode == kernel::Mode::LogOnly && !d.allowed() {
            " — log_only: would have denied, ran anyway"
        } else {
            ""
        };
        format!(
            "  [{} {}: {}{shadow}]",
            action_name(d),
            format!("{:?}", d.effect).to_lowercase(),
            if ids.is_empty() {
                "no policy".into()
            } else {
                ids.join(", ")
            }
        )
    });
    format!(
        "{:>8}ms #{:<3} {:<18} {}{decision}",
        e.t_ms,
        e.seq,
        e.body.kind(),
        detail(&e.body)
    )
}

/// The part of a payload a person watching wants to see, cut to one line.
fn detail(body: &EventBody) -> String {
    let text = match body {
        EventBody::SessionStarted { request, mode, .. } => {
            format!("(mode {}) {request}", mode.as_str())
        }
        EventBody::ModelCalled { model, attempt, .. } => format!("{model} (attempt {attempt})"),
        EventBody::ModelResponded {
            input_tokens,
            output_tokens,
            cost,
            ..
        } => format!("{input_tokens}+{output_tokens} tokens, cost {cost}"),
        EventBody::ToolCalled {
            tool,
            input,
            attempt,
            ..
        } => format!("{tool} {input} (attempt {attempt})"),
        EventBody::ToolReturned { tool, output, .. } => format!("{tool} → {output}"),
        EventBody::CallFailed {
            target,
            error,
            will_retry,
            ..
        } => format!(
            "{target}: {error}{}",
            if *will_retry { " (retrying)" } else { "" }
        ),
        EventBody::Decision { request } => request.to_string(),
        EventBody::BudgetReserved { amount, .. } => format!("{amount}"),
        EventBody::BudgetSettled {
            reserved,
            actual,
            violation,
            ..
        } => format!(
            "{actual} of {reserved}{}",
            if *violation {
                " (over the reservation)"
            } else {
                ""
            }
        ),
        EventBody::Rejected { intent, error } => format!("{intent}: {error}"),
        EventBody::ApprovalRequested {
            request_id, action, ..
        } => format!("{request_id}: {action} needs approval"),
        EventBody::LimitReached { limit, .. } => limit.clone(),
        EventBody::Cancelled { by, reason } => format!("by {by}: {reason}"),
        EventBody::Completed { answer } => answer.clone(),
        EventBody::Failed { error } => error.clone(),
        _ => String::new(),
    };
    let line = text.replace('\n', " ");
    if line.chars().count() > 160 {
        let cut: String = line.chars().take(157).collect();
        format!("{cut}...")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use kernel::{Intent, Mode, Session, SessionConfig};

    use super::readable;

    /// The readable output says the session's mode, and in `log_only` marks a denial that let the
    /// call through (issue 16, 4).
    #[test]
    fn the_mode_and_log_only_denials_are_shown() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let deployment = Arc::new(kernel::pack::load_packs(&root, &["demo"]).expect("demo"));
        let config = SessionConfig {
            id: "s".into(),
            tenant: "acme".into(),
            user: "alice@acme".into(),
            agent: "assistant@acme".into(),
            budget: "acme".into(),
            mode: Mode::LogOnly,
        };
        let mut s = Session::new(deployment, config).expect("session");
        let started = s
            .step(
                Intent::Start {
                    request: "hi".into(),
                },
                0,
            )
            .expect("start");
        assert!(readable(&started.events[0]).contains("(mode log_only) hi"));
        // No pack permits `wire_transfer`: denied, yet it runs in log_only.
        let t = s
            .step(
                Intent::CallTool {
                    tool: "wire_transfer".into(),
                    input: serde_json::json!({"iban": "X", "amount": 1}),
                    estimated_cost: 0,
                },
                1,
            )
            .expect("step");
        let lines: Vec<String> = t.events.iter().map(readable).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("would have denied, ran anyway")),
            "{lines:#?}"
        );
    }
}
