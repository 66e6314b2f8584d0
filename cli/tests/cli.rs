//! The `arbiter` binary end to end: the shipped scenarios pass, and every kind of bad file gets a
//! located error and a non-zero exit, never a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../eval/tests/common/mod.rs"]
mod common;

use common::repo;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

fn arbiter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .output()
        .expect("arbiter runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_clean_failure(o: &Output, must_contain: &[&str]) {
    let t = text(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1 (not a panic):\n{t}"
    );
    for m in must_contain {
        assert!(t.contains(m), "missing `{m}` in:\n{t}");
    }
}

/// A scratch copy of `policies/` (and a `scenarios/` folder) to break things in.
fn scratch() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "arbiter-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    common::copy_tree(&repo().join("policies"), &dir.join("policies"));
    std::fs::create_dir_all(dir.join("scenarios")).expect("mkdir");
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

const SCENARIO: &str = r#"name = "t"
packs = ["demo"]
mode = "enforce"

[session]
tenant = "acme"
user = "alice@acme"
agent = "assistant@acme"
budget = "acme"
model = "small"
request = "hi"

[[turns]]
answer = "ok"

[expect]
status = "completed"
"#;

#[test]
fn the_shipped_scenarios_all_pass_and_the_last_line_counts_them() {
    let o = arbiter(&["test"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let last = t.lines().last().unwrap_or_default();
    let files = eval::scenario_files(&[repo().join("scenarios")])
        .expect("scenarios")
        .len();
    assert_eq!(last, format!("{files} passed, 0 failed"));
}

/// `--json`: one object per scenario, in file order, with every decision and what decided it.
#[test]
fn test_json_lists_every_scenario_with_its_decisions() {
    let o = arbiter(&["test", "scenarios/support", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let files = eval::scenario_files(&[repo().join("scenarios/support")]).expect("scenarios");
    assert_eq!(lines.len(), files.len());
    for (line, file) in lines.iter().zip(&files) {
        assert!(
            file.ends_with(line["file"].as_str().expect("file")),
            "{line}"
        );
        assert_eq!(line["result"], "pass");
    }
    let granted = lines
        .iter()
        .find(|l| {
            l["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("refund_approval_granted.toml"))
        })
        .expect("scenario");
    let decisions = granted["decisions"].as_array().expect("decisions");
    assert!(decisions.iter().any(|d| {
        d["action"] == "Action::\"issue_refund\""
            && d["effect"] == "deny"
            && d["policies"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p == "support.refund.approval"))
    }));
}

/// Two suites whose files share a name record side by side into one store (sessions are named
/// by path), and every session verifies and re-checks.
#[test]
fn suites_sharing_file_names_record_into_one_store() {
    let dir = scratch();
    for suite in ["a", "b"] {
        let d = dir.join("scenarios").join(suite);
        std::fs::create_dir_all(&d).expect("mkdir");
        write(&d.join("same.toml"), SCENARIO);
    }
    let store = format!("sqlite:{}", s(&dir.join("two.db")));
    let o = arbiter(&["test", s(&dir.join("scenarios")), "--store", &store]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = arbiter(&["audit", "verify", &store]);
    assert!(text(&o).contains("2 session(s)"), "{}", text(&o));
    let o = arbiter(&["audit", "recheck", &store]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn check_is_clean_on_every_shipped_pack() {
    let o = arbiter(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for pack in [
        "base + coding",
        "base + demo",
        "base + enterprise",
        "base + support",
    ] {
        assert!(text(&o).contains(&format!("ok    {pack}")), "{}", text(&o));
    }
}

#[test]
fn a_failing_expectation_is_explained_and_fails_the_run() {
    let dir = scratch();
    let file = dir.join("scenarios/wrong.toml");
    write(
        &file,
        &SCENARIO.replace("status = \"completed\"", "status = \"cancelled\""),
    );
    let o = arbiter(&["test", s(&file)]);
    assert_clean_failure(
        &o,
        &[
            "expected final status `cancelled`, got `completed`",
            "0 passed, 1 failed",
        ],
    );
}

/// The README's walkthrough, as written there: raising the refund approval threshold above the
/// named scenario's 12,000 makes its approval expectations fail, and `arbiter test` says which.
#[test]
fn the_readme_walkthrough_edit_breaks_the_approval_scenario() {
    let dir = scratch();
    let scenario = dir.join("scenarios").join("refund_approval_granted.toml");
    std::fs::copy(
        repo().join("scenarios/support/refund_approval_granted.toml"),
        &scenario,
    )
    .expect("copy");
    let before = arbiter(&["test", s(&scenario)]);
    assert!(before.status.success(), "{}", text(&before));
    assert!(text(&before).contains("1 passed, 0 failed"));

    let policy = dir.join("policies/support/support.cedar");
    let cedar = std::fs::read_to_string(&policy).expect("read");
    assert!(cedar.contains("context.input.amount > 5000"));
    write(
        &policy,
        &cedar.replace(
            "context.input.amount > 5000",
            "context.input.amount > 15000",
        ),
    );
    let after = arbiter(&["test", s(&scenario)]);
    let t = text(&after);
    assert!(!after.status.success(), "{t}");
    for m in [
        "expected decision #1 on `issue_refund` to be deny by `support.refund.approval`",
        "expected a `approval_requested` event, got none",
        "0 passed, 1 failed",
    ] {
        assert!(t.contains(m), "missing `{m}` in:\n{t}");
    }
}

/// `arbiter play --tool NAME=PROGRAM` with a name the scenario has no tool of is an error, not a
/// silently scripted tool (issue 16, "smaller").
#[test]
fn play_refuses_a_tool_the_scenario_does_not_have() {
    let dir = scratch();
    let db = dir.join("play.db");
    let o = arbiter(&[
        "play",
        "scenarios/recovery/append_notes.toml",
        "--store",
        &format!("sqlite:{}", db.display()),
        "--tool",
        "apend_note=/bin/true",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no tool `apend_note`"), "{}", text(&o));
    assert!(text(&o).contains("append_note"), "{}", text(&o));
}

#[test]
fn malformed_scenarios_are_located() {
    let dir = scratch();
    let syntax = dir.join("scenarios/syntax.toml");
    write(
        &syntax,
        &SCENARIO.replace("mode = \"enforce\"", "mode = enforce"),
    );
    assert_clean_failure(&arbiter(&["replay", s(&syntax)]), &["syntax.toml:3:8"]);

    let unknown = dir.join("scenarios/unknown.toml");
    write(&unknown, &SCENARIO.replace("[[turns]]", "[[turnz]]"));
    assert_clean_failure(
        &arbiter(&["replay", s(&unknown)]),
        &["unknown.toml:13:3", "turnz"],
    );

    let two_kinds = dir.join("scenarios/two.toml");
    write(
        &two_kinds,
        &format!("{SCENARIO}\n[[events]]\nat_ms = 1\ntick = true\ncancel = \"alice@acme\"\n"),
    );
    assert_clean_failure(
        &arbiter(&["replay", s(&two_kinds)]),
        &["two.toml:", "events[0]: give exactly"],
    );

    let missing = dir.join("scenarios/nope.toml");
    assert_clean_failure(
        &arbiter(&["replay", s(&missing)]),
        &["cannot read", "nope.toml"],
    );
}

#[test]
fn malformed_policies_schema_entities_and_tools_are_located() {
    let dir = scratch();
    let p = dir.join("policies");
    write(
        &p.join("demo/broken.cedar"),
        "@id(\"broken\")\npermit (principal, action, resource)\nwhen { context.session.steps > };\n",
    );
    assert_clean_failure(
        &arbiter(&["check", "--policies", s(&p)]),
        &["demo/broken.cedar:3", "FAIL  base + demo"],
    );
    // A scenario running against the broken pack reports the same location.
    let file = dir.join("scenarios/t.toml");
    write(&file, SCENARIO);
    assert_clean_failure(
        &arbiter(&["test", s(&file)]),
        &["ERROR", "demo/broken.cedar:3", "0 passed, 1 failed"],
    );
    std::fs::remove_file(p.join("demo/broken.cedar")).expect("rm");

    write(
        &p.join("demo/typed.cedar"),
        "@id(\"typed\")\nforbid (principal, action == Action::\"refund\", resource)\nwhen { context.input.amount > \"lots\" };\n",
    );
    assert_clean_failure(
        &arbiter(&["check", "--policies", s(&p)]),
        &["demo/typed.cedar:3", "typed", "strict validation"],
    );
    std::fs::remove_file(p.join("demo/typed.cedar")).expect("rm");

    let entities = std::fs::read_to_string(p.join("demo/entities.json")).expect("read");
    write(
        &p.join("demo/entities.json"),
        &entities.replacen("\"roles\": []", "\"roles\": 7", 1),
    );
    assert_clean_failure(
        &arbiter(&["check", "--policies", s(&p)]),
        &["demo/entities.json:5:3", "alice@acme", "roles"],
    );
    write(&p.join("demo/entities.json"), &entities);

    write(
        &p.join("demo/tools/bad.json"),
        "{\n  \"name\": \"bad\",\n  \"risk\": \"low\",\n  \"input_schema\": {\"type\": \"object\", \"properties\": {\"x\": {\"type\": [\"string\", \"integer\"]}}}\n}\n",
    );
    assert_clean_failure(
        &arbiter(&["check", "--policies", s(&p)]),
        &["tool `bad`", "/properties/x"],
    );
    std::fs::remove_file(p.join("demo/tools/bad.json")).expect("rm");

    let schema = std::fs::read_to_string(p.join("schema.cedarschema")).expect("read");
    write(
        &p.join("schema.cedarschema"),
        &schema.replace("entity Tenant;", "entity Tenant"),
    );
    assert_clean_failure(
        &arbiter(&["check", "--policies", s(&p)]),
        &["schema.cedarschema:"],
    );
}

#[test]
fn explain_shows_the_decision_policies_and_obligations() {
    let context = r#"{"session": {"id": "x", "tenant": {"__entity": {"type": "Tenant", "id": "acme"}},
        "user": {"__entity": {"type": "User", "id": "alice@acme"}}, "agent": {"__entity": {"type": "Agent", "id": "assistant@acme"}},
        "steps": 0, "elapsed_ms": 0, "tokens": 0, "cost_spent": 0, "cost_reserved": 0, "budget_limit": 2000000,
        "tool_calls": 0, "model_calls": 0, "attempt": 1, "in_doubt": false, "labels": []},
        "history": {"tools_called": [], "emails_recent": 0, "refund_total": 0}, "input": {"order_id": "ord-1", "amount": 20000},
        "provenance": {
          "order_id": {"from_user": true, "from_trusted": false, "from_user_or_trusted": true, "from_untrusted": false, "novel": false, "labels": [], "embedded_from_untrusted": false, "embedded_novel": false},
          "amount": {"from_user": false, "from_trusted": false, "from_user_or_trusted": false, "from_untrusted": false, "novel": true, "labels": [], "embedded_from_untrusted": false, "embedded_novel": false}}}"#;
    let o = arbiter(&[
        "explain",
        "--pack",
        "demo",
        "--principal",
        "Agent::\"assistant@acme\"",
        "--action",
        "refund",
        "--resource",
        "Tool::\"refund\"",
        "--context",
        context,
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("decision:    Deny (Forbidden)") && t.contains("demo.refund.approval"),
        "{t}"
    );
    assert!(
        t.contains("an approver can lift [demo.refund.approval]"),
        "{t}"
    );
    assert!(
        t.contains("cedar:       Deny by [demo.refund.approval]") && !t.contains("differs"),
        "Cedar's own answer is shown beside the kernel's: {t}"
    );

    let o = arbiter(&[
        "explain",
        "--pack",
        "demo",
        "--principal",
        "Agent::\"assistant@acme\"",
        "--action",
        "refund",
        "--resource",
        "Tool::\"refund\"",
    ]);
    assert!(
        text(&o).contains("error:") && text(&o).contains("Deny (Error)"),
        "an invalid context fails closed:\n{}",
        text(&o)
    );
}

#[test]
fn audit_verify_accepts_a_replayed_log_and_names_the_first_tampered_seq() {
    let dir = scratch();
    let o = arbiter(&[
        "replay",
        "--events",
        "scenarios/support/refund_approval_granted.toml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let log = String::from_utf8_lossy(&o.stdout).into_owned();
    let good = dir.join("good.jsonl");
    write(&good, &log);
    let o = arbiter(&["audit", "verify", s(&good)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let mut lines: Vec<&str> = log.lines().collect();
    lines.remove(3);
    let bad = dir.join("bad.jsonl");
    write(&bad, &lines.join("\n"));
    assert_clean_failure(
        &arbiter(&["audit", "verify", s(&bad)]),
        &["seq 4", "expected seq 3"],
    );
}

#[test]
fn fuzz_finds_a_policy_hole_saves_it_and_the_saved_scenario_fails_arbiter_test() {
    let dir = scratch();
    let p = dir.join("policies");
    let safety = std::fs::read_to_string(p.join("base/safety.cedar")).expect("read");
    write(
        &p.join("base/safety.cedar"),
        &safety.replace(
            "resource.tags.contains(\"egress\")",
            "resource.tags.contains(\"nothing\")",
        ),
    );
    let property = r#"no-allow: action in call_tool when session.labels contains "untrusted" and resource.tags contains "egress""#;
    let saved = dir.join("scenarios/fuzz");
    let o = arbiter(&[
        "fuzz",
        "--cases",
        "1500",
        "--seed",
        "2",
        "--policies",
        s(&p),
        "--property",
        property,
        "--save-failures",
        s(&saved),
    ]);
    assert_clean_failure(
        &o,
        &[
            "violations:",
            "property:",
            "shortest counterexample",
            "saved as",
        ],
    );
    let files = eval::scenario_files(std::slice::from_ref(&saved)).expect("saved files");
    assert!(!files.is_empty());
    let o = arbiter(&["test", s(&saved)]);
    assert_clean_failure(&o, &["expected the property to hold", "0 passed"]);

    // The same run over the intact pack is clean, and says so with exit 0.
    let o = arbiter(&[
        "fuzz",
        "--cases",
        "300",
        "--seed",
        "2",
        "--property",
        property,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("violations:         0"), "{}", text(&o));
}

#[test]
fn a_signed_store_and_its_export_verify_with_the_key_and_a_cut_one_does_not() {
    let dir = scratch();
    let key = dir.join("signing.key");
    let o = arbiter(&["keygen", "--out", s(&key)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let public = dir.join("signing.key.pub");
    assert!(public.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the private key is its owner's alone");
    }
    // keygen never overwrites a key.
    assert_eq!(
        arbiter(&["keygen", "--out", s(&key)]).status.code(),
        Some(1)
    );

    let db = dir.join("signed.db");
    let store = format!("sqlite:{}", s(&db));
    let o = arbiter(&[
        "test",
        "scenarios/support",
        "--store",
        &store,
        "--signing-key",
        s(&key),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = arbiter(&["audit", "verify", &store, "--key", s(&public)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("chain intact and signed"), "{}", text(&o));

    let export = dir.join("export.jsonl");
    let o = arbiter(&["audit", "export", &store, "--out", s(&export)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = arbiter(&["audit", "verify", s(&export), "--key", s(&public)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = arbiter(&["audit", "recheck", s(&export)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("compared byte for byte: 0 differ"),
        "{}",
        text(&o)
    );

    // Another key is not the signer.
    let other = dir.join("other.key");
    assert_eq!(
        arbiter(&["keygen", "--out", s(&other)]).status.code(),
        Some(0)
    );
    let o = arbiter(&[
        "audit",
        "verify",
        &store,
        "--key",
        s(&dir.join("other.key.pub")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not the trusted key"), "{}", text(&o));

    // The export's last session cut before its end: the signature names the end it lacks.
    let content = std::fs::read_to_string(&export).expect("read");
    let lines: Vec<&str> = content.lines().collect();
    let last_event = lines
        .iter()
        .rposition(|l| l.starts_with("{\"event\""))
        .expect("an event line");
    let cut: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != last_event)
        .map(|(_, l)| *l)
        .collect();
    let cut_file = dir.join("cut.jsonl");
    write(&cut_file, &(cut.join("\n") + "\n"));
    let o = arbiter(&["audit", "verify", s(&cut_file)]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "without a key a cut end is only open: {}",
        text(&o)
    );
    assert!(text(&o).contains("OPEN"), "{}", text(&o));
    let o = arbiter(&["audit", "verify", s(&cut_file), "--key", s(&public)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("TAMPERED"), "{}", text(&o));

    // A plain event log has no signatures to check.
    let o = arbiter(&[
        "replay",
        "scenarios/support/refund_approval_granted.toml",
        "--events",
    ]);
    let log = dir.join("events.jsonl");
    write(&log, &String::from_utf8_lossy(&o.stdout));
    let o = arbiter(&["audit", "verify", s(&log), "--key", s(&public)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("carries no"), "{}", text(&o));
}

#[test]
fn a_recorded_store_verifies_and_rechecks_from_the_cli() {
    let dir = scratch();
    let db = dir.join("audit.db");
    let store = format!("sqlite:{}", s(&db));
    let o = arbiter(&["test", "scenarios/support", "--store", &store]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = arbiter(&["audit", "verify", &store]);
    assert!(text(&o).contains("chain intact"), "{}", text(&o));
    let o = arbiter(&["audit", "recheck", &store]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("0 differ"), "{}", text(&o));
    // Against stricter policies, the decisions that change are listed and the exit code says so.
    let support = dir.join("policies/support/support.cedar");
    let policy = std::fs::read_to_string(&support).expect("read");
    write(
        &support,
        &policy.replace("context.input.amount > 5000", "context.input.amount > 1"),
    );
    let o = arbiter(&[
        "audit",
        "recheck",
        &store,
        "--policies",
        s(&dir.join("policies")),
        "--pack",
        "support",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("recorded") && text(&o).contains("now"),
        "{}",
        text(&o)
    );
    let o = arbiter(&[
        "audit",
        "verify",
        &format!("sqlite:{}", s(&dir.join("missing.db"))),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

/// A 2 MB string literal beside a validation error: `check` names the file and line and prints a
/// window of the line, not the line (it printed 51 MB, one character per write, for minutes).
#[test]
fn a_long_line_is_reported_in_a_window() {
    let dir = scratch();
    write(
        &dir.join("policies/base/big.cedar"),
        &format!(
            "@id(\"big\")\nforbid (principal, action == Action::\"call_model\", resource) when {{ context.nope == \"{}\" }};\n",
            "x".repeat(2 * 1024 * 1024)
        ),
    );
    let o = arbiter(&["check", "--policies", s(&dir.join("policies"))]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o);
    assert!(
        out.contains("big.cedar:2:"),
        "{}",
        &out[..out.len().min(2000)]
    );
    assert!(
        out.len() < 64 * 1024,
        "{} bytes of output for one error per pack",
        out.len()
    );
}

/// A scenario property whose path names nothing on any request of its action (a misspelling:
/// `context.attempt` for `context.session.attempt`) fails the scenario instead of passing whatever
/// happens.
#[test]
fn a_property_with_a_path_that_names_nothing_fails_the_scenario() {
    let dir = scratch();
    let shipped =
        std::fs::read_to_string(repo().join("scenarios/coding/shell_cwd_push_and_retries.toml"))
            .expect("read");
    assert!(shipped.contains("when context.session.attempt > 1"));
    let file = dir.join("scenarios").join("typo.toml");
    write(
        &file,
        &shipped.replace("context.session.attempt", "context.attempt"),
    );
    let o = arbiter(&["test", s(&file)]);
    assert_clean_failure(
        &o,
        &[
            "`context.attempt` names nothing on any request of its action",
            "0 passed, 1 failed",
        ],
    );
}

/// A PostgreSQL store that cannot be reached fails `serve` at start, naming the server without
/// its password.
#[test]
fn serve_names_an_unreachable_postgres_store_without_its_password() {
    let o = arbiter(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--store",
        "postgresql://nobody:secret@127.0.0.1:1/none",
    ]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("postgresql://nobody:***@127.0.0.1:1/none"),
        "{t}"
    );
    assert!(!t.contains("secret"), "the password is not echoed: {t}");
}
