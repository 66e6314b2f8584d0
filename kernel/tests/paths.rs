//! Path arguments (`ToolSpec::paths`): decided, recorded and dispatched in canonical form, and
//! confined element by element through `context.paths`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use common::{config, kinds, started_on, step, tool};
use kernel::pack::builder_for;
use kernel::{Effect, Mode, PathRules, Risk, Source, ToolSpec};
use serde_json::json;

/// A low-risk tool `name` taking `schema`, with `paths`.
fn spec(name: &str, schema: serde_json::Value, paths: PathRules) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: String::new(),
        risk: Risk::Low,
        tags: Default::default(),
        output_labels: Default::default(),
        field_labels: Vec::new(),
        tenant: None,
        input_schema: schema,
        paths: Some(paths),
    }
}

fn deployment() -> Arc<kernel::Deployment> {
    let spec = spec(
        "read_files",
        json!({
            "type": "object",
            "properties": {"paths": {"type": "array", "items": {"type": "string"}}},
            "required": ["paths"],
            "additionalProperties": false
        }),
        PathRules {
            arguments: vec!["paths".into()],
            roots: [
                ("work".to_owned(), "/w".to_owned()),
                ("secret".to_owned(), "/w/secret".to_owned()),
            ]
            .into(),
        },
    );
    let policy = r#"
        @id("t.confined")
        forbid (principal, action == Action::"read_files", resource)
        unless { context.paths.all.contains("work") && !context.paths.any.contains("secret") };
        @id("t.no_dots")
        forbid (principal, action == Action::"read_files", resource)
        when { context.input.paths.contains("/w/secret/k") };
    "#;
    let built = builder_for(&common::root(), &["demo"])
        .unwrap()
        .tool(spec, "test")
        .policies(Source::new("paths.cedar", policy))
        .build()
        .unwrap();
    Arc::new(built)
}

fn call(paths: serde_json::Value) -> kernel::Transition {
    let mut s = started_on(deployment(), config(Mode::Enforce));
    step(&mut s, tool("read_files", json!({ "paths": paths })), 10)
}

fn dispatched(t: &kernel::Transition) -> Option<serde_json::Value> {
    t.effects.iter().find_map(|e| match e {
        Effect::CallTool { input, .. } => Some(input.clone()),
        _ => None,
    })
}

#[test]
fn what_runs_is_the_canonical_form_that_was_decided() {
    let t = call(json!(["/w/a/../b", "/w//c/./d/"]));
    assert_eq!(
        dispatched(&t),
        Some(json!({"paths": ["/w/b", "/w/c/d"]})),
        "{:?}",
        kinds(&t)
    );
}

#[test]
fn one_element_outside_or_inside_a_forbidden_root_denies_the_call() {
    assert!(dispatched(&call(json!(["/w/a", "/etc/passwd"]))).is_none());
    assert!(dispatched(&call(json!(["/w/a", "/w/x/../secret/k"]))).is_none());
    // A prefix is not a folder: `/work` is not inside `/w`.
    assert!(dispatched(&call(json!(["/work/a"]))).is_none());
    assert!(dispatched(&call(json!(["/w/a", "/w/b"]))).is_some());
}

#[test]
fn a_policy_on_the_input_sees_the_canonical_path_too() {
    let t = call(json!(["/w/x/./../secret/k"]));
    let decision = t.events.iter().find_map(|e| e.decision.as_ref()).unwrap();
    let ids: Vec<&str> = decision.policies.iter().map(|p| p.id.as_str()).collect();
    assert!(ids.contains(&"t.no_dots"), "{ids:?}");
}

#[test]
fn path_rules_must_name_string_arguments() {
    let bad = spec(
        "bad",
        json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
        PathRules {
            arguments: vec!["n".into()],
            roots: Default::default(),
        },
    );
    let Err(errors) = builder_for(&common::root(), &["demo"])
        .unwrap()
        .tool(bad, "test")
        .build()
    else {
        panic!("a path rule on an integer argument loaded");
    };
    let all: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert!(
        all.iter()
            .any(|e| e.contains("`n` must be a string or an array of strings")),
        "{all:?}"
    );
}
