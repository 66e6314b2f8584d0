//! Tool schemas as real servers publish them (`tests/fixtures/mcp/`, captured from the servers
//! themselves) register, and their optional, referenced and nested forms reach policies as typed
//! attributes (issue 17, 1).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{config, root, step, tool};
use kernel::pack::builder_for;
use kernel::{Deployment, Mode, Session, Source};
use serde_json::json;

fn fixture(name: &str) -> Source {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mcp")
        .join(name);
    Source::new(
        path.display().to_string(),
        std::fs::read_to_string(&path).expect("fixture"),
    )
}

fn with(fixture_file: &str, policies: &str) -> Arc<Deployment> {
    let built = builder_for(&root(), &["demo"])
        .expect("packs")
        .tools_json(fixture(fixture_file))
        .policies(Source::new("test.cedar", policies.to_owned()))
        .build();
    match built {
        Ok(d) => Arc::new(d),
        Err(e) => panic!("{fixture_file}: {e}"),
    }
}

#[test]
fn every_published_schema_registers() {
    for (file, count) in [
        ("server-filesystem.json", 14),
        ("server-everything.json", 13),
        ("mcp-server-git.json", 12),
        ("mcp-server-fetch.json", 1),
        ("pydantic-nested.json", 1),
    ] {
        let d = with(file, "");
        let text = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/mcp")
                .join(file),
        )
        .expect("fixture");
        let specs: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json");
        assert_eq!(specs.len(), count, "{file}");
        for spec in specs {
            let name = spec["name"].as_str().expect("name");
            assert!(d.tool(name).is_some(), "{file}: {name} not registered");
        }
    }
}

/// pydantic's optional field (`anyOf [string, null]`, `default: null`): an optional attribute,
/// and an explicit `null` is taken as absent.
#[test]
fn an_optional_field_is_optional_and_null_is_absent() {
    let d = with(
        "mcp-server-git.json",
        "@id(\"t.contains\") forbid (principal, action == Action::\"git_branch\", resource) \
         when { context.input has contains };",
    );
    let mut s = Session::new(d, config(Mode::Enforce)).expect("session");
    step(
        &mut s,
        kernel::Intent::Start {
            request: "list my branches".into(),
        },
        0,
    );
    let t = step(
        &mut s,
        tool(
            "git_branch",
            json!({"repo_path": "/r", "branch_type": "local", "contains": null}),
        ),
        1,
    );
    assert!(t.decision.clone().expect("d").allowed(), "{:?}", t.decision);
    let call = common::call_id(&t);
    step(&mut s, common::returned(&call, json!("main")), 2);
    let t = step(
        &mut s,
        tool(
            "git_branch",
            json!({"repo_path": "/r", "branch_type": "local", "contains": "abc123"}),
        ),
        3,
    );
    let d = t.decision.clone().expect("d");
    assert!(
        !d.allowed() && d.policies.iter().any(|p| p.id == "t.contains"),
        "{d:?}"
    );
}

/// pydantic's nested model (`$ref` into `$defs`) is a nested record policies can read; a union
/// that is not an optional form is still refused, with its pointer.
#[test]
fn a_referenced_model_is_a_nested_record() {
    let d = with(
        "pydantic-nested.json",
        "@id(\"t.paris\") forbid (principal, action == Action::\"send_parcel\", resource) \
         when { context.input.to.city == \"Paris\" && context.input.to has postcode };\n\
         @id(\"t.insured\") forbid (principal, action == Action::\"send_parcel\", resource) \
         when { context.input has insured_value && context.input.insured_value > 10000 };",
    );
    let mut s = Session::new(d, config(Mode::Enforce)).expect("session");
    step(
        &mut s,
        kernel::Intent::Start {
            request: "send it".into(),
        },
        0,
    );
    let parcel = |to: serde_json::Value, insured: serde_json::Value| {
        tool(
            "send_parcel",
            json!({"recipient": "Ann", "to": to, "insured_value": insured, "note": null}),
        )
    };
    let t = step(
        &mut s,
        parcel(json!({"city": "Paris", "postcode": null}), json!(null)),
        1,
    );
    assert!(t.decision.clone().expect("d").allowed(), "{:?}", t.decision);
    let call = common::call_id(&t);
    step(&mut s, common::returned(&call, json!("ok")), 2);
    let t = step(
        &mut s,
        parcel(json!({"city": "Paris", "postcode": "75001"}), json!(5)),
        3,
    );
    let d = t.decision.clone().expect("d");
    assert!(d.policies.iter().any(|p| p.id == "t.paris"), "{d:?}");
    let t = step(&mut s, parcel(json!({"city": "Lyon"}), json!(20000)), 4);
    let d = t.decision.clone().expect("d");
    assert!(d.policies.iter().any(|p| p.id == "t.insured"), "{d:?}");

    let union = r#"{"name": "u", "risk": "low", "input_schema": {"type": "object", "properties": {
        "a": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
        "b": {"oneOf": [{"type": "boolean"}, {"type": "number"}]}}}}"#;
    let errs = match builder_for(&root(), &["demo"])
        .expect("packs")
        .tools_json(Source::new("u.json", union))
        .build()
    {
        Ok(_) => panic!("a union has no Cedar type"),
        Err(e) => e.0,
    };
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        text.len(),
        2,
        "both problems of the tool, each located: {text:?}"
    );
    assert!(
        text.iter().any(|t| t.contains("/properties/a/anyOf")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.contains("/properties/b/oneOf")),
        "{text:?}"
    );
}
