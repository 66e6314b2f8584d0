//! `arbiter diff` over the shipped scenarios: a policy set against itself changes nothing; a
//! dropped forbid shows as every decision it made, flipped, and fails the gate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn diff(base: &Path, head: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(["diff", "--base"])
        .arg(base)
        .arg("--head")
        .arg(head)
        .args(["--scenarios"])
        .arg(repo().join("scenarios/coding"))
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_same_policies_change_nothing() {
    let policies = repo().join("policies");
    let (code, stdout, stderr) = diff(&policies, &policies, &["--fail-on-change"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("0 decision(s) changed"), "{stderr}");
}

#[test]
fn a_dropped_forbid_shows_as_the_decisions_it_made_and_fails_the_gate() {
    let head = std::env::temp_dir().join(format!("arbiter-diff-head-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&head);
    copy_dir(&repo().join("policies"), &head);
    let file = head.join("coding/coding.cedar");
    let text = std::fs::read_to_string(&file).unwrap();
    let start = text.find("@id(\"coding.fs.workspace_only\")").unwrap();
    let end = start + text[start..].find("};").unwrap() + 2;
    std::fs::write(&file, format!("{}{}", &text[..start], &text[end..])).unwrap();

    let base = repo().join("policies");
    let (code, stdout, stderr) = diff(&base, &head, &["--fail-on-change"]);
    assert_eq!(code, 1, "the gate fails: {stdout}{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("deny by coding.fs.workspace_only → allow")),
        "{stdout}"
    );
    let (code, json, _) = diff(&base, &head, &["--json"]);
    assert_eq!(code, 0, "without --fail-on-change the diff only reports");
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["base"]["effect"], "deny");
    assert!(first["scenario"].as_str().unwrap().contains("coding"));
}

/// `--log`: the sessions a store recorded, re-decided under both sets. Recorded with the shipped
/// policies, re-decided without the pii rule: the email it refused is the one change.
#[test]
fn a_stores_recorded_sessions_are_re_decided_under_both_sets() {
    let dir = std::env::temp_dir().join(format!("arbiter-diff-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("sqlite:{}", dir.join("runs.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(["test", "scenarios/support", "--store", &store])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let head = dir.join("head");
    copy_dir(&repo().join("policies"), &head);
    let file = head.join("support/support.cedar");
    let text = std::fs::read_to_string(&file).unwrap();
    let start = text.find("@id(\"support.pii.no_email\")").unwrap();
    let end = start + text[start..].find("};").unwrap() + 2;
    std::fs::write(&file, format!("{}{}", &text[..start], &text[end..])).unwrap();

    let run = |head: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args(["diff", "--base", "policies", "--head"])
            .arg(head)
            .args(["--log", &store, "--fail-on-change"])
            .current_dir(repo())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&repo().join("policies"));
    assert_eq!(
        code, 0,
        "the recording's own policies change nothing: {stdout}{stderr}"
    );
    assert!(
        stderr.contains("0 decision(s) changed in 0 of 20 recorded session(s)"),
        "{stderr}"
    );

    let (code, stdout, stderr) = run(&head);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "shopco/scenarios/support/pii_not_emailed: send_email #1: deny by support.pii.no_email → allow by base.permit.tools"
        ),
        "{stdout}"
    );
    assert!(stderr.contains("recorded session(s)"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
