//! The fuzzer: invariants hold over thousands of generated sessions on the shipped packs; each
//! invariant fires when the kernel is broken the matching way; a broken policy pack is caught by
//! an author property, shrunk, saved as a scenario, and that scenario fails `arbiter test`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use eval::fuzz::{Fuzz, Property, World, case, names, run};
use kernel::faults::{Fault, inject};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn packs() -> Vec<Option<String>> {
    vec![
        None,
        Some("support".into()),
        Some("coding".into()),
        Some("enterprise".into()),
        Some("demo".into()),
    ]
}

fn worlds() -> &'static [World] {
    static WORLDS: OnceLock<Vec<World>> = OnceLock::new();
    WORLDS.get_or_init(|| Fuzz::worlds(&policies(), &packs(), 7).expect("worlds build"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/fuzz.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_invariant_holds_on_generated_sessions(c in case(5)) {
        let outcome = run(&worlds()[c.world], &c, &[]);
        prop_assert!(outcome.violations.is_empty(), "{:?}\nintents: {:?}", outcome.violations, outcome.intents);
    }
}

/// Runs `cases` generated sessions with `fault` injected; returns the invariants that fired.
fn fired_with(fault: Fault, cases: usize) -> Vec<String> {
    let fuzz = Fuzz {
        worlds: Fuzz::worlds(&policies(), &packs(), 11).expect("worlds"),
        properties: vec![],
        seed: 3,
    };
    inject(Some(fault));
    let (summary, _) = fuzz.run(cases, |_, _| {});
    inject(None);
    summary.violations.into_keys().collect()
}

#[test]
fn each_invariant_catches_its_fault() {
    let expectations = [
        (Fault::EffectOnDeny, names::EFFECT_WITHOUT_ALLOW),
        (Fault::FailOpen, names::ORACLE),
        (Fault::ForgetLabels, names::LABELS),
        (Fault::SkipStepCount, names::STEPS),
        (Fault::EffectAfterEnd, names::AFTER_END),
        (Fault::BrokenChain, names::CHAIN),
        (Fault::Nondeterministic, names::DETERMINISM),
        (Fault::PanicOnInput, names::PANIC),
        (Fault::IgnoreSpend, names::BUDGET),
        (Fault::IllTypedContext, names::INVALID_REQUEST),
        (Fault::ForgetScopedPolicies, names::ORACLE),
        (Fault::OverPrunedContext, names::ORACLE),
        (Fault::ForgetAlwaysPolicies, names::ORACLE),
        (Fault::ForgetKeyedPolicies, names::ORACLE),
        (Fault::CompiledAndSkipsRight, names::ORACLE),
        (Fault::ForeignTickResource, names::SESSION_RESOURCE),
    ];
    for (fault, invariant) in expectations {
        let fired = fired_with(fault, 600);
        assert!(
            fired.iter().any(|f| f == invariant),
            "{fault:?} should trip `{invariant}`; fired: {fired:?}"
        );
    }
    let clean = Fuzz {
        worlds: Fuzz::worlds(&policies(), &packs(), 11).expect("worlds"),
        properties: vec![],
        seed: 3,
    };
    assert!(
        clean.run(600, |_, _| {}).0.violations.is_empty(),
        "the same cases are clean without faults"
    );
}

/// A copy of `policies/` with `edit` applied to one file.
fn broken_copy(name: &str, file: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("arbiter-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    common::copy_tree(&policies(), &dir);
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, edit(&text)).expect("write");
    dir
}

#[test]
fn a_pack_without_memory_isolation_trips_the_tenancy_invariant() {
    let root = broken_copy("tenancy", "base/tenancy.cedar", |t| {
        t.replace(
            "unless { resource in context.session.tenant };\n\n@id(\"base.tenant.budget\")",
            "when { false };\n\n@id(\"base.tenant.budget\")",
        )
    });
    let fuzz = Fuzz {
        worlds: Fuzz::worlds(&root, &[None], 5).expect("worlds"),
        properties: vec![],
        seed: 9,
    };
    let (summary, _) = fuzz.run(800, |_, _| {});
    assert!(
        summary.violations.contains_key(names::TENANT),
        "{:?}",
        summary.violations
    );
}

#[test]
fn a_broken_pack_is_caught_by_a_property_shrunk_and_saved_as_a_failing_scenario() {
    let property = r#"no-allow: action in call_tool when session.labels contains "untrusted" and resource.tags contains "egress""#;
    // The shipped base pack keeps this property...
    let bases = [None, None, None, None];
    let holds = Fuzz {
        worlds: Fuzz::worlds(&policies(), &bases, 21).expect("worlds"),
        properties: vec![Property::parse(property).expect("parses")],
        seed: 4,
    };
    let (summary, _) = holds.run(1500, |_, _| {});
    assert!(
        !summary.violations.contains_key(names::PROPERTY),
        "{:?}",
        summary.violations
    );

    // ...a copy without the egress rule breaks it.
    let root = broken_copy("egress", "base/safety.cedar", |t| {
        t.replace(
            "&& resource.tags.contains(\"egress\")",
            "&& resource.tags.contains(\"no-such-tag\")",
        )
    });
    let fuzz = Fuzz {
        worlds: Fuzz::worlds(&root, &bases, 21).expect("worlds"),
        properties: vec![Property::parse(property).expect("parses")],
        seed: 4,
    };
    let (summary, failures) = fuzz.run(1500, |_, _| {});
    assert!(
        summary.violations.contains_key(names::PROPERTY),
        "{:?}",
        summary.violations
    );
    let failure = failures
        .iter()
        .find(|f| {
            f.outcome
                .violations
                .iter()
                .any(|v| v.invariant == names::PROPERTY)
        })
        .expect("a failure");
    assert!(
        failure.case.steps.len() <= 6,
        "shrunk to a handful of steps, got {}: {:?}",
        failure.case.steps.len(),
        failure.case.steps
    );

    let dir = root.join("regressions");
    let path = eval::fuzz::save_failure(&dir, &root, &fuzz, failure, 1).expect("saved");
    let (_, run, failures) = eval::run_file(&path).expect("the saved scenario loads and replays");
    assert!(!run.violations.is_empty());
    assert!(
        failures
            .iter()
            .any(|f| f.expected == "the property to hold"),
        "{failures:?}"
    );
}

#[test]
fn a_seeded_run_is_reproducible() {
    let summary = |seed| {
        let fuzz = Fuzz {
            worlds: Fuzz::worlds(&policies(), &packs(), seed).expect("worlds"),
            properties: vec![],
            seed,
        };
        let s = fuzz.run(200, |_, _| {}).0;
        (s.transitions, s.allowed, s.denied, s.rejected, s.policies)
    };
    assert_eq!(summary(42), summary(42));
    assert_ne!(
        summary(42).0,
        summary(43).0,
        "a different seed explores differently"
    );
}
