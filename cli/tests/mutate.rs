//! `arbiter mutate`: a rule no scenario tests survives and is shown as a diff; a tested one is
//! killed by the scenario that tests it; `--min` gates on the score.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn mutate(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .arg("mutate")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shipped policies with one extra coding rule that no scenario exercises, and one coding
/// scenario that tests the force-push rule.
fn weakened() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("arbiter-mutate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cp = |from: &str, to: &str| {
        let ok = Command::new("cp")
            .args(["-rL", from, to])
            .status()
            .unwrap()
            .success();
        assert!(ok, "cp {from} {to}");
    };
    cp(
        repo().join("policies").to_str().unwrap(),
        dir.join("policies").to_str().unwrap(),
    );
    std::fs::create_dir_all(dir.join("scenarios")).unwrap();
    cp(
        repo()
            .join("scenarios/coding/force_push_rejected.toml")
            .to_str()
            .unwrap(),
        dir.join("scenarios").to_str().unwrap(),
    );
    let coding = dir.join("policies/coding/coding.cedar");
    let mut text = std::fs::read_to_string(&coding).unwrap();
    text.push_str(
        "\n@id(\"weak.no_shutdown\")\nforbid (principal, action == Action::\"run_shell\", resource)\n\
         when { context.input.command like \"*shutdown*\" };\n",
    );
    std::fs::write(&coding, text).unwrap();
    dir
}

#[test]
fn an_untested_rule_survives_as_a_diff_and_a_tested_one_is_killed() {
    let dir = weakened();
    let (code, stdout, stderr) = mutate(&dir, &["--min", "100"]);
    assert_eq!(code, 1, "the score is below 100: {stdout}{stderr}");
    assert!(stderr.contains("below --min 100"), "{stderr}");
    assert!(
        stdout.contains(
            "survived: weak.no_shutdown — drop the policy (policies/coding/coding.cedar; 1 scenario(s) still pass)\n\
             \x20   - @id(\"weak.no_shutdown\")\n"
        ),
        "{stdout}"
    );

    let (code, json, stderr) = mutate(&dir, &["--json"]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let of = |policy: &str, operator: &str| {
        report["mutants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["policy"] == policy && m["operator"] == operator)
            .unwrap_or_else(|| panic!("no {operator} mutant of {policy}"))
            .clone()
    };
    let dropped = of("coding.git.force_push_needs_approval", "drop_policy");
    assert_eq!(dropped["outcome"], "killed", "{dropped}");
    assert!(
        dropped["scenario"]
            .as_str()
            .unwrap()
            .ends_with("force_push_rejected.toml"),
        "{dropped}"
    );
    let unasked = of("coding.git.force_push_needs_approval", "drop_approval");
    assert_eq!(unasked["outcome"], "killed", "{unasked}");
    assert_eq!(of("weak.no_shutdown", "flip_effect")["outcome"], "survived");
    // Dropping the `has` guard leaves a condition that does not validate: no one could deploy
    // that set, so it counts for neither side.
    let stillborn = report["mutants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["policy"] == "coding.git.force_push_needs_approval" && m["operator"] == "drop_operand"
        })
        .unwrap();
    assert_eq!(stillborn["outcome"], "stillborn", "{stillborn}");
    assert!(
        stillborn["reason"]
            .as_str()
            .unwrap()
            .contains("fails strict validation"),
        "{stillborn}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The README's figure and list of survivors for the shipped packs and scenarios: a change that
/// kills or lets through a mutant must update both.
#[test]
fn the_shipped_suite_kills_what_the_readme_says() {
    let (code, json, stderr) = mutate(&repo(), &["--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("mutation score 96.6%: 344 of 356 mutants killed, 12 survived"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut survivors: Vec<String> = report["mutants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["outcome"] == "survived")
        .map(|m| {
            format!(
                "{} {}",
                m["policy"].as_str().unwrap(),
                m["operator"].as_str().unwrap()
            )
        })
        .collect();
    survivors.sort();
    assert_eq!(
        survivors,
        [
            "base.limit.steps widen_scope",
            "base.limit.time drop_limit",
            "base.limit.time widen_scope",
            "base.permit.approve drop_condition",
            "base.tenant.tool widen_scope",
            "coding.shell.rate widen_scope",
            "enterprise.start.shadow drop_condition",
            "scenario.limit.twenty_seconds drop_limit",
            "scenario.limit.twenty_seconds widen_scope",
            "support.limit.steps widen_scope",
            "support.start.shadow drop_condition",
            "support.start.shadow widen_scope",
        ]
    );
}
