//! `arbiter prove` with a real SMT solver (Debian's cvc5, installed by `.ci/run`): the shipped
//! properties hold, a weakened pack fails with a counterexample, two policy sets compare, the
//! findings name what never matches and what can err, and a missing solver has its own exit code.
//!
//! Without cvc5 on the machine these tests print why and stop; `.ci/run` sets
//! `ARBITER_REQUIRE_SOLVER=1`, which turns that into a failure, so CI never passes them unrun.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn solver_present() -> bool {
    let present = Command::new(std::env::var("CVC5").unwrap_or_else(|_| "cvc5".into()))
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var_os("ARBITER_REQUIRE_SOLVER").is_none(),
            "ARBITER_REQUIRE_SOLVER is set but cvc5 cannot be run"
        );
        eprintln!("SKIPPED: no cvc5 on this machine (apt-get install cvc5, or set CVC5)");
    }
    present
}

fn prove(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .arg("prove")
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

/// A copy of the shipped policies with `forbid` (an `@id`) removed from `file`.
fn without(name: &str, file: &str, forbid: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("arbiter-prove-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("cp")
        .args(["-rL"])
        .arg(repo().join("policies"))
        .arg(dir.join("policies"))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let path = dir.join("policies").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(&format!("@id(\"{forbid}\")")).unwrap();
    let end = start + text[start..].find(";\n").unwrap() + 2;
    std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).unwrap();
    dir
}

/// The README's claim: every shipped property holds, proved by the solver it names.
#[test]
fn the_shipped_properties_hold() {
    if !solver_present() {
        return;
    }
    let (code, stdout, stderr) = prove(&repo(), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("solver: cvc5 version"), "{stdout}");
    assert!(stderr.contains("22 of 22 proof(s) hold"), "{stderr}");
    assert!(
        stdout.contains(
            "holds   base+support       a high-risk tool call is never allowed before an approval (7 request environments)"
        ),
        "{stdout}"
    );
}

#[test]
fn a_weakened_pack_fails_with_a_counterexample() {
    if !solver_present() {
        return;
    }
    let dir = without("weak", "base/safety.cedar", "base.approval.high_risk");
    let (code, stdout, stderr) = prove(&dir, &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let failure = stdout
        .split("FAILS   base+support       a high-risk tool call is never allowed before an approval\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no failure for support: {stdout}"));
    assert!(
        failure.trim_start().starts_with("counterexample (Action::"),
        "{failure}"
    );
    let tool = failure.split("FAILS").next().unwrap();
    assert!(
        tool.contains("risk: \"high\""),
        "the counterexample's tool is high-risk: {tool}"
    );
    assert!(stderr.contains("of 22 proof(s) hold"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `implies` and `equivalent` against a second directory: dropping a forbid only allows more, so
/// the shipped set implies the weakened one, not the other way round.
#[test]
fn two_policy_sets_compare() {
    if !solver_present() {
        return;
    }
    let dir = without("cmp", "support/support.cedar", "support.pii.no_email");
    let props = dir.join("compare.toml");
    let shipped = repo().join("policies").canonicalize().unwrap();
    std::fs::write(
        &props,
        format!(
            r#"
[[property]]
name = "the shipped set allows nothing the weakened one denies"
packs = ["support"]
check = "implies"
other = "{weak}"

[[property]]
name = "the weakened set allows nothing the shipped one denies"
packs = ["support"]
actions = ["send_email"]
check = "implies"
other = "{shipped}"

[[property]]
name = "the two sets decide alike"
packs = ["support"]
actions = ["send_email"]
check = "equivalent"
other = "{shipped}"
"#,
            weak = dir.join("policies").display(),
            shipped = shipped.display()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = prove(
        &dir,
        &[
            "--policies",
            shipped.to_str().unwrap(),
            "--properties",
            props.to_str().unwrap(),
        ],
    );
    // Run from the shipped side: shipped ⊆ weak holds.
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("holds   base+support       the shipped set allows"),
        "{stdout}"
    );

    let (code, stdout, stderr) = prove(
        &dir,
        &[
            "--policies",
            "policies",
            "--properties",
            props.to_str().unwrap(),
        ],
    );
    // From the weakened side: its extra allows break both the implication and the equivalence.
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("FAILS   base+support       the weakened set allows nothing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAILS   base+support       the two sets decide alike"),
        "{stdout}"
    );
    assert!(
        stdout.contains("labels: [\"pii\""),
        "the email carries pii: {stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Findings: the guards for entities missing from the store never match in a proof (it assumes
/// every entity exists), the limits that add counters can overflow, and a limit another set
/// tightens is redundant there. No shipped permit is shadowed.
#[test]
fn findings_name_what_never_matches_and_what_can_err() {
    if !solver_present() {
        return;
    }
    let (code, stdout, stderr) = prove(&repo(), &["--findings"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for line in [
        "finding base.start.known (base+coding): never matches any request",
        "finding base.model.known (base+coding): never matches any request",
        "finding base.limit.budget (base+coding): can fail to evaluate (the kernel then denies)",
        "finding support.credit.cap (base+support): can fail to evaluate (the kernel then denies)",
        // Under enterprise's 20,000-token ration, base's 200,000 never decides alone.
        "finding base.limit.tokens (base+enterprise): redundant: another policy of its effect matches every request it does",
        "finding support.model.retries (base+support): redundant",
    ] {
        assert!(stdout.contains(line), "missing `{line}`:\n{stdout}");
    }
    assert!(!stdout.contains("shadowed"), "{stdout}");
    // Exactly the findings the README lists.
    let findings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("finding "))
        .collect();
    assert_eq!(
        findings,
        [
            "finding base.start.known (base+coding): never matches any request",
            "finding base.model.known (base+coding): never matches any request",
            "finding base.limit.budget (base+coding): can fail to evaluate (the kernel then denies)",
            "finding base.limit.tokens (base+coding): can fail to evaluate (the kernel then denies)",
            "finding demo.refund.cap (base+demo): can fail to evaluate (the kernel then denies)",
            "finding base.limit.tokens (base+enterprise): redundant: another policy of its effect matches every request it does",
            "finding enterprise.model.tokens (base+enterprise): can fail to evaluate (the kernel then denies)",
            "finding base.permit.model (base+support): redundant: another policy of its effect matches every request it does",
            "finding support.refund.session_cap (base+support): can fail to evaluate (the kernel then denies)",
            "finding support.model.retries (base+support): redundant: another policy of its effect matches every request it does",
            "finding support.credit.cap (base+support): can fail to evaluate (the kernel then denies)",
        ]
    );
}

/// A permit every request of which a forbid also matches is shadowed.
#[test]
fn a_permit_a_forbid_always_overrides_is_shadowed() {
    if !solver_present() {
        return;
    }
    let dir = without("shadow", "support/support.cedar", "support.pii.no_email");
    let file = dir.join("policies/support/support.cedar");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(
        "\n@id(\"weak.email.permit\")\npermit (principal, action == Action::\"send_email\", resource)\n\
         when { context.session.labels.contains(\"pii\") };\n\
         @id(\"weak.email.forbid\")\nforbid (principal, action == Action::\"send_email\", resource)\n\
         when { context.session.labels.contains(\"pii\") };\n",
    );
    std::fs::write(&file, text).unwrap();
    let props = dir.join("none.toml");
    std::fs::write(&props, "").unwrap();
    let (code, stdout, stderr) = prove(
        &dir,
        &["--properties", props.to_str().unwrap(), "--findings"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("finding weak.email.permit (base+"),
        "{stdout}"
    );
    assert!(
        stdout.contains("shadowed: a forbid matches every request it permits"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_a_solver_nothing_is_proved_and_the_exit_code_says_so() {
    let (code, stdout, stderr) = prove(&repo(), &["--solver", "/nonexistent/cvc5"]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stderr.contains("no solver"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}
