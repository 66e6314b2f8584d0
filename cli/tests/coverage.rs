//! `arbiter coverage` over the shipped scenarios: every policy a run decided with is counted, the
//! rest are named, and `--min` gates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn coverage(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .arg("coverage")
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_partial_suite_names_the_policies_it_never_exercised_and_fails_the_gate() {
    // The coding scenarios alone: the support pack is not loaded, so its policies are not counted;
    // base's memory rules are never exercised by them.
    let (code, stdout, stderr) = coverage(&["scenarios/coding", "--min", "100"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("below --min 100"), "{stderr}");
    let never = stdout
        .lines()
        .find(|l| l.starts_with("never exercised:"))
        .unwrap();
    assert!(
        never.contains("base.flow.no_pii_to_shared_memory"),
        "{never}"
    );
    assert!(
        !stdout.contains("support."),
        "only the packs the scenarios load count"
    );
}

#[test]
fn the_matrix_names_the_scenarios_each_policy_decided_in() {
    let (code, json, stderr) = coverage(&["scenarios/coding", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let matrix: serde_json::Value = serde_json::from_str(&json).unwrap();
    let confined = &matrix["policies"]["coding.fs.workspace_only"];
    assert!(
        confined
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().ends_with("confined_to_workspace.toml")),
        "{confined}"
    );
}

/// The README's claim: the shipped scenarios exercise every shipped policy, and `--min 100` holds.
#[test]
fn the_shipped_suite_exercises_every_policy() {
    let (code, stdout, stderr) = coverage(&["--min", "100"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("60 of 60 policies exercised (100.0%)"),
        "{stderr}"
    );
    assert!(!stdout.contains("never exercised"), "{stdout}");
}

/// Condition coverage: on the coding scenarios alone, base's tenancy clauses are only ever seen
/// true (no coding scenario crosses a tenant), and the gate fails; on the whole suite every clause
/// and operand is seen both ways, as the README says.
#[test]
fn conditions_are_seen_both_ways_or_named() {
    let (code, stdout, stderr) = coverage(&[
        "scenarios/coding",
        "--conditions",
        "--min-conditions",
        "100",
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("below --min-conditions 100%"), "{stderr}");
    for line in [
        "only true   base.tenant.principal unless #1: principal in context.session.tenant",
        "only false  base.limit.steps when #1: context.session.steps >= 50",
        // `resource.tenant` errs where `resource has tenant` is false: neither side counted.
        "never       base.tenant.tool when #1: resource.tenant != context.session.tenant",
    ] {
        assert!(stdout.contains(line), "missing `{line}`:\n{stdout}");
    }
    assert!(
        stderr.contains("29 of 56 clauses and operands seen both true and false (51.8%)"),
        "{stderr}"
    );

    let (code, stdout, stderr) = coverage(&["--conditions", "--min-conditions", "100"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "86 of 86 clauses and operands seen both true and false (100.0%) over 1125 request(s)"
        ),
        "{stderr}"
    );
}
