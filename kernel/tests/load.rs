//! Loading bundles: the shipped packs validate strictly; every kind of bad file is reported with
//! its file and line, all problems at once, never a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::root;
use kernel::pack::{PackError, builder_for, load_packs, read};
use kernel::{Deployment, LoadError, Source};
use miette::Diagnostic;

fn base_builder() -> kernel::DeploymentBuilder {
    builder_for(&root(), &["demo"]).expect("shipped packs read")
}

fn errors_of(result: Result<Deployment, kernel::LoadErrors>) -> Vec<LoadError> {
    match result {
        Ok(_) => panic!("expected load errors"),
        Err(e) => e.0,
    }
}

#[test]
fn every_shipped_pack_passes_strict_validation() {
    let base = load_packs(&root(), &[]).expect("base alone");
    assert!(base.policy_ids().iter().all(|id| id.starts_with("base.")));
    let demo = load_packs(&root(), &["demo"]).expect("base + demo");
    assert!(demo.policy_ids().len() > base.policy_ids().len());
    assert!(
        demo.schema_text()
            .contains("action \"refund\" in [Action::\"call_tool\"]")
    );
    assert!(demo.schema_text().contains(
        "type refundInput = { \"amount\": Long, \"order_id\": String, \"reason\"?: String };"
    ));
}

#[test]
fn policy_syntax_errors_are_located() {
    let errs = errors_of(
        base_builder()
            .policies(Source::new(
                "bad.cedar",
                "// c\n\n@id(\"x\")\npermit (principal, action, resource) when { 1 + };\n",
            ))
            .build(),
    );
    let [LoadError::PolicySyntax { at, .. }] = errs.as_slice() else {
        panic!("{errs:?}")
    };
    assert_eq!((at.file.as_str(), at.line), ("bad.cedar", 4));
    assert!(errs[0].labels().is_some(), "miette can underline it");
}

#[test]
fn missing_and_duplicate_ids_are_located() {
    let text = "@id(\"a\")\npermit (principal, action, resource);\n\npermit (principal, action, resource);\n@id(\"a\")\nforbid (principal, action, resource);\n";
    let errs = errors_of(
        base_builder()
            .policies(Source::new("ids.cedar", text))
            .build(),
    );
    assert!(
        errs.iter()
            .any(|e| matches!(e, LoadError::MissingId { at } if at.line == 4)),
        "{errs:?}"
    );
    assert!(errs.iter().any(|e| matches!(e, LoadError::DuplicateId { at, id, first } if id == "a" && at.line == 5 && first.line == 1)), "{errs:?}");
}

#[test]
fn strict_validation_errors_name_the_policy_and_line() {
    let text = "\n\n@id(\"typo\")\nforbid (principal, action == Action::\"refund\", resource)\nwhen { context.input.amout > 5 };\n";
    let errs = errors_of(
        base_builder()
            .policies(Source::new("typo.cedar", text))
            .build(),
    );
    let [
        LoadError::Validation {
            at,
            policy,
            message,
        },
    ] = errs.as_slice()
    else {
        panic!("{errs:?}")
    };
    assert_eq!(policy, "typo");
    assert_eq!((at.file.as_str(), at.line), ("typo.cedar", 5), "{message}");
    assert!(message.contains("amout"), "{message}");
}

#[test]
fn kernel_annotations_are_checked() {
    let text = "@id(\"p\")\n@timeout_ms(\"soon\")\n@approval(\"x\")\npermit (principal, action, resource);\n";
    let errs = errors_of(
        base_builder()
            .policies(Source::new("ann.cedar", text))
            .build(),
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs.iter()
            .all(|e| matches!(e, LoadError::Annotation { policy, .. } if policy == "p"))
    );
}

#[test]
fn approval_annotations_name_a_role_and_self_approval_only_says_allowed() {
    for (annotations, wanted) in [
        ("@approval(\"\")", "must name the role"),
        (
            "@approval(\"chief financial officer\")",
            "must name the role",
        ),
        (
            "@approval(\"cfo\")\n@self_approval(\"yes\")",
            "the only value is",
        ),
        (
            "@self_approval(\"allowed\")",
            "only has an effect beside @approval",
        ),
    ] {
        let text = format!(
            "@id(\"p\")\n{annotations}\nforbid (principal, action == Action::\"call_tool\", resource);\n"
        );
        let errs = errors_of(
            base_builder()
                .policies(Source::new("ann.cedar", &text))
                .build(),
        );
        assert!(
            errs.iter().any(
                |e| matches!(e, LoadError::Annotation { message, .. } if message.contains(wanted))
            ),
            "{annotations}: {errs:?}"
        );
    }
    let fine = "@id(\"p\")\n@approval(\"cfo\")\n@self_approval(\"allowed\")\nforbid (principal, action == Action::\"call_tool\", resource);\n";
    assert!(
        base_builder()
            .policies(Source::new("ok.cedar", fine))
            .build()
            .is_ok()
    );
}

#[test]
fn bad_entities_are_located_by_line() {
    let syntax = "[\n  {\"uid\": {\"type\": \"Tenant\", \"id\": \"t\"}, \"attrs\": {}, \"parents\": []},\n  oops\n]";
    let errs = errors_of(
        base_builder()
            .entities(Source::new("e1.json", syntax))
            .build(),
    );
    assert!(
        matches!(&errs[..], [LoadError::Entities { at, .. }] if at.file == "e1.json" && at.line == 3),
        "{errs:?}"
    );

    let shape = "[\n  {\"uid\": {\"type\": \"Tenant\", \"id\": \"t\"}, \"attrs\": {}, \"parents\": []},\n  {\"uid\": {\"type\": \"User\", \"id\": \"u\"}, \"attrs\": {}, \"parents\": []}\n]";
    let errs = errors_of(
        base_builder()
            .entities(Source::new("e2.json", shape))
            .build(),
    );
    let [LoadError::Entities { at, message }] = errs.as_slice() else {
        panic!("{errs:?}")
    };
    assert_eq!((at.file.as_str(), at.line), ("e2.json", 3));
    assert!(message.contains("roles"), "{message}");

    let tool = "[{\"uid\": {\"type\": \"Tool\", \"id\": \"x\"}, \"attrs\": {}, \"parents\": []}]";
    let errs = errors_of(
        base_builder()
            .entities(Source::new("e3.json", tool))
            .build(),
    );
    assert!(errs[0].to_string().contains("tool registry"), "{errs:?}");

    let dup =
        "[{\"uid\": {\"type\": \"Tenant\", \"id\": \"acme\"}, \"attrs\": {}, \"parents\": []}]";
    let errs = errors_of(base_builder().entities(Source::new("e4.json", dup)).build());
    assert!(errs[0].to_string().contains("defined twice"), "{errs:?}");
}

#[test]
fn bad_tools_are_named_with_the_offending_schema_pointer() {
    let any_of = r#"{"name": "t1", "risk": "low", "input_schema": {"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}}"#;
    let builtin = r#"{"name": "approve", "risk": "low", "input_schema": {"type": "object"}}"#;
    let unknown_field = "{\n  \"name\": \"t3\",\n  \"risk\": \"low\",\n  \"colour\": \"red\",\n  \"input_schema\": {}\n}";
    let errs = errors_of(
        base_builder()
            .tools_json(Source::new("t1.json", any_of))
            .tools_json(Source::new("t2.json", builtin))
            .tools_json(Source::new("t3.json", unknown_field))
            .build(),
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs.iter().any(|e| matches!(e, LoadError::Tool { tool, message, .. } if tool == "t1" && message.contains("/properties/x"))));
    assert!(errs.iter().any(|e| matches!(e, LoadError::Tool { tool, message, .. } if tool == "approve" && message.contains("built-in"))));
    assert!(errs.iter().any(|e| matches!(e, LoadError::Tool { at, message, .. } if at.line == 4 && message.contains("colour"))));
}

/// Tool metadata that used to pass `check` (issue 16, 3): each is refused, naming the tool and,
/// for schemas, every offending JSON pointer.
#[test]
fn tool_metadata_check_refuses_what_no_cedar_type_or_tenant_holds() {
    let tool = |name: &str, extra: &str, schema: &str| {
        format!(r#"{{"name": {name}, "risk": "low"{extra}, "input_schema": {schema}}}"#)
    };
    let cases = [
        (
            tool(
                r#""ghost_tool""#,
                r#", "tenant": "nobody""#,
                r#"{"type": "object"}"#,
            ),
            "ghost_tool",
            "tenant `nobody`",
        ),
        (
            tool(r#""pay\u202eyrev""#, "", r#"{"type": "object"}"#),
            "pay\u{202e}yrev",
            "bidirectional",
        ),
        (
            tool(r#""nul\u0000""#, "", r#"{"type": "object"}"#),
            "nul\0",
            "control characters",
        ),
        (
            tool(
                r#""fmt""#,
                "",
                r#"{"type": "object", "properties": {"d": {"type": "string", "format": "dat"}}}"#,
            ),
            "fmt",
            "unknown `format`",
        ),
        (
            tool(
                r#""empty_enum""#,
                "",
                r#"{"type": "object", "properties": {"e": {"enum": []}}}"#,
            ),
            "empty_enum",
            "empty `enum`",
        ),
        (
            tool(
                r#""ref_deep""#,
                "",
                r##"{"type": "object", "additionalProperties": {"$ref": "#"}}"##,
            ),
            "ref_deep",
            "/additionalProperties/$ref",
        ),
        (
            tool(
                r#""cycle""#,
                "",
                r##"{"type": "object", "$defs": {"n": {"$ref": "#/$defs/n"}}, "properties": {"n": {"$ref": "#/$defs/n"}}}"##,
            ),
            "cycle",
            "/properties/n/$ref",
        ),
        (
            tool(
                r#""pattern""#,
                "",
                r#"{"type": "object", "patternProperties": {"^x": {"type": "string"}}}"#,
            ),
            "pattern",
            "/patternProperties",
        ),
        (
            tool(
                r#""prefix""#,
                "",
                r#"{"type": "object", "properties": {"p": {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "string"}}}}"#,
            ),
            "prefix",
            "/properties/p/prefixItems",
        ),
        (
            tool(
                r#""uneval""#,
                "",
                r#"{"type": "object", "properties": {"o": {"type": "object", "unevaluatedProperties": false}}}"#,
            ),
            "uneval",
            "/properties/o/unevaluatedProperties",
        ),
        (
            tool(
                r#""badpath""#,
                r#", "field_labels": [{"path": "memo", "labels": ["untrusted"]}]"#,
                r#"{"type": "object"}"#,
            ),
            "badpath",
            "not a JSON pointer",
        ),
    ];
    for (json, name, wanted) in cases {
        let errs = errors_of(
            base_builder()
                .tools_json(Source::new("tool.json", json.clone()))
                .build(),
        );
        assert!(
            errs.iter().any(|e| matches!(e, LoadError::Tool { tool, message, .. } if tool == name && message.contains(wanted))),
            "{json}: {errs:?}"
        );
    }
    // Every offending place of one tool is reported, not only the first.
    let two = tool(
        r#""two""#,
        "",
        r#"{"type": "object", "properties": {"a": {"anyOf": []}, "b": {"oneOf": []}}}"#,
    );
    let errs = errors_of(
        base_builder()
            .tools_json(Source::new("two.json", two))
            .build(),
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
}

#[test]
fn bad_counters_are_located() {
    let text = "[[counter]]\nname = \"x\"\naction = \"nope\"\n\n[[counter]]\nname = \"y\"\naction = \"send_email\"\nsum = \"subject\"\n";
    let errs = errors_of(base_builder().counters(Source::new("c.toml", text)).build());
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        matches!(&errs[0], LoadError::Counters { at, message } if at.line == 2 && message.contains("nope"))
    );
    assert!(
        matches!(&errs[1], LoadError::Counters { at, message } if at.line == 6 && message.contains("not an integer"))
    );
    let errs = errors_of(
        base_builder()
            .counters(Source::new("c2.toml", "[[counter]\n"))
            .build(),
    );
    assert!(matches!(&errs[0], LoadError::Counters { at, .. } if at.line == 1));
}

#[test]
fn schema_errors_are_located_in_the_schema_file() {
    let schema = read(&root().join("schema.cedarschema")).expect("schema");
    let broken = Source::new(
        "schema.cedarschema",
        schema
            .text
            .replace("entity Agent in [Tenant];", "entity Agent in [Tenant]"),
    );
    let errs = errors_of(Deployment::builder(broken).build());
    let [LoadError::Schema { at, .. }] = errs.as_slice() else {
        panic!("{errs:?}")
    };
    assert_eq!(at.file, "schema.cedarschema");
    assert!(at.line > 10, "{at}");
}

/// Sessions do not re-validate their requests at run time, so a schema that no longer matches what
/// the kernel sends must be refused at load, naming every request kind it breaks.
#[test]
fn a_schema_that_rejects_the_kernel_s_requests_is_refused_at_load() {
    let schema = read(&root().join("schema.cedarschema")).expect("schema");
    let edit = |from: &str, to: &str| {
        assert!(schema.text.contains(from), "{from}");
        Deployment::builder(Source::new(
            "schema.cedarschema",
            schema.text.replace(from, to),
        ))
        .build()
    };
    // A required attribute the kernel does not supply breaks every request.
    let errs = errors_of(edit(
        "  in_doubt: Bool,",
        "  in_doubt: Bool,\n  region: String,",
    ));
    assert!(
        errs.iter().all(
            |e| matches!(e, LoadError::Contract { at, .. } if at.file == "schema.cedarschema")
        ),
        "{errs:?}"
    );
    let requests: Vec<String> = errs
        .iter()
        .filter_map(|e| match e {
            LoadError::Contract { request, .. } => Some(request.clone()),
            _ => None,
        })
        .collect();
    for kind in [
        "call_model request",
        "spend_budget request",
        "continue request",
        "approve request",
    ] {
        assert!(requests.iter().any(|r| r == kind), "{kind} in {requests:?}");
    }
    assert!(
        errs[0].to_string().contains("is not valid for `Action::"),
        "{}",
        errs[0]
    );
    // One action's context with a different type for what the kernel sends breaks only it.
    let errs = errors_of(edit(
        "context: { session: Session, history: History, amount: Long, purpose: String }",
        "context: { session: Session, history: History, amount: Long, purpose: Long }",
    ));
    let [LoadError::Contract { request, .. }] = errs.as_slice() else {
        panic!("{errs:?}")
    };
    assert_eq!(request, "spend_budget request");
}

#[test]
fn a_missing_pack_is_an_io_error_naming_the_path() {
    let err = load_packs(&root(), &["no-such-pack"])
        .err()
        .expect("missing");
    assert!(
        matches!(&err, PackError::Io { path, .. } if path.ends_with("no-such-pack")),
        "{err}"
    );
}

/// Text Cedar's parser or the policy index would recurse through once per level or clause is
/// refused before it is parsed, with the place it goes too far (it aborted the process).
#[test]
fn deeply_nested_or_huge_policies_are_refused_with_a_location() {
    let deep = format!(
        "@id(\"deep\")\npermit(principal, action, resource) when {{ {}true{} }};\n",
        "(".repeat(1000),
        ")".repeat(1000)
    );
    let clauses: Vec<String> = (0..5000)
        .map(|i| format!("context.session.steps > {i}"))
        .collect();
    let wide = format!(
        "@id(\"wide\")\npermit(principal, action, resource) when {{ {} }};\n",
        clauses.join(" && ")
    );
    for (text, needle) in [(deep, "nested deeper than 64"), (wide, "more than 500")] {
        let built = kernel::pack::builder_for(&root(), &["demo"])
            .expect("packs")
            .policies(kernel::Source::new("extra.cedar", text))
            .build();
        let errors = built.err().expect("refused").0;
        let err = errors
            .iter()
            .find(|e| e.to_string().contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {errors:?}"));
        assert!(err.to_string().starts_with("extra.cedar:2:"), "{err}");
    }
    // Inside the limits, a nested condition still loads.
    let fine = format!(
        "@id(\"fine\")\npermit(principal, action, resource) when {{ {}true{} }};\n",
        "(".repeat(60),
        ")".repeat(60)
    );
    kernel::pack::builder_for(&root(), &["demo"])
        .expect("packs")
        .policies(kernel::Source::new("extra.cedar", fine))
        .build()
        .expect("60 levels load");
}

#[test]
fn a_pack_name_cannot_reach_outside_the_policy_folder() {
    // `../policies/demo` names a real folder: without the check it would load.
    for name in ["../policies/demo", "demo/../demo", "..", "", "/etc"] {
        let err = load_packs(&root(), &[name]).err().expect("refused");
        assert!(
            matches!(&err, PackError::BadName { name: n } if n == name),
            "{name:?}: {err}"
        );
    }
}

#[test]
fn a_session_records_the_hashes_of_its_bundle_once_when_it_starts() {
    use kernel::{EventBody, Intent, Mode, Session};
    let d = std::sync::Arc::new(load_packs(&root(), &["demo"]).expect("demo"));
    let mut s = Session::new(d.clone(), common::config(Mode::Enforce)).expect("session");
    let started = s
        .step(
            Intent::Start {
                request: "x".into(),
            },
            0,
        )
        .expect("start");
    let EventBody::SessionStarted { bundle, .. } = &started.events[0].body else {
        panic!("first event: {:?}", started.events[0].body)
    };
    let recorded = bundle.clone();
    assert_eq!(&recorded, d.hashes());
    let t = s
        .step(
            common::tool("web_search", serde_json::json!({"query": "q"})),
            1,
        )
        .expect("call");
    let json = serde_json::to_string(&t.events).expect("json");
    assert!(
        !json.contains(&recorded.policies),
        "later events do not repeat the bundle: {json}"
    );

    let edited = base_builder()
        .policies(Source::new("extra.cedar", "@id(\"extra\") forbid (principal, action == Action::\"cancel\", resource) when { false };"))
        .build()
        .expect("loads");
    assert_ne!(
        edited.hashes().policies,
        recorded.policies,
        "a policy edit changes the policy hash"
    );
    assert_eq!(edited.hashes().schema, recorded.schema);
    assert_eq!(edited.hashes().entities, recorded.entities);
}

/// Hostile inputs of about 10 MB each: every one is refused (or accepted) with a located error,
/// never an abort (issue 16, 3). How long each takes is reported by `check`, not asserted here.
#[test]
fn ten_megabyte_hostile_inputs_are_refused_with_a_located_error() {
    const MB10: usize = 10 * 1024 * 1024;
    let policy = |name: &str, text: String| {
        errors_of(base_builder().policies(Source::new(name, text)).build())
    };
    // A 10 MB string literal with a validation error beside it.
    let literal = format!(
        "@id(\"big\")\nforbid (principal, action == Action::\"call_model\", resource)\nwhen {{ context.nope == \"{}\" }};\n",
        "x".repeat(MB10)
    );
    let errs = policy("literal.cedar", literal);
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("literal.cedar:3")),
        "{:?}",
        errs.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    // 10 MB of nesting, and a chain of 10 MB of `&&`.
    let nested = format!(
        "@id(\"deep\")\npermit (principal, action, resource) when {{ {} }};",
        "(".repeat(MB10)
    );
    assert!(!policy("deep.cedar", nested).is_empty());
    let chain = format!(
        "@id(\"long\")\npermit (principal, action, resource) when {{ {}true }};",
        "true && ".repeat(MB10 / 8)
    );
    assert!(!policy("long.cedar", chain).is_empty());
    // Entities and a tool schema nested 10 MB deep.
    let errs = errors_of(
        base_builder()
            .entities(Source::new("deep.json", "[".repeat(MB10)))
            .build(),
    );
    assert!(
        errs.iter().any(|e| e.to_string().contains("deep.json")),
        "{errs:?}"
    );
    let schema = format!(
        "{{\"name\": \"deep\", \"description\": \"d\", \"risk\": \"low\", \"input_schema\": {}}}",
        "{\"type\": \"object\", \"properties\": {\"a\": ".repeat(MB10 / 40)
    );
    let errs = errors_of(
        base_builder()
            .tools_json(Source::new("deep_tool.json", schema))
            .build(),
    );
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("deep_tool.json")),
        "{errs:?}"
    );
}

/// `explain` decides as a session does (fail closed on an erroring forbid, through the index and
/// the kernel's evaluator), and reports Cedar's own answer beside it, which skips the error.
#[test]
fn explain_decides_through_the_gate_and_shows_cedars_answer_beside_it() {
    let overflow = "@id(\"overflow\")\nforbid (principal, action == Action::\"refund\", resource)\nwhen { context.input.amount * 4611686018427387904 > 0 };";
    let d = base_builder()
        .policies(Source::new("o.cedar", overflow))
        .build()
        .expect("loads");
    let context = serde_json::json!({
        "session": {"id": "x", "tenant": {"__entity": {"type": "Tenant", "id": "acme"}},
            "user": {"__entity": {"type": "User", "id": "alice@acme"}},
            "agent": {"__entity": {"type": "Agent", "id": "assistant@acme"}},
            "steps": 0, "elapsed_ms": 0, "tokens": 0, "cost_spent": 0, "cost_reserved": 0,
            "budget_limit": 2000000, "tool_calls": 0, "model_calls": 0, "attempt": 1,
            "in_doubt": false, "labels": []},
        "history": {"tools_called": [], "emails_recent": 0, "refund_total": 0},
        "input": {"order_id": "ord-1", "amount": 4},
        "provenance": {
            "order_id": {"from_user": true, "from_trusted": false, "from_user_or_trusted": true, "from_untrusted": false, "novel": false, "labels": [], "embedded_from_untrusted": false, "embedded_novel": false},
            "amount": {"from_user": true, "from_trusted": false, "from_user_or_trusted": true, "from_untrusted": false, "novel": false, "labels": [], "embedded_from_untrusted": false, "embedded_novel": false}}
    });
    let (p, a, r) = (
        "Agent::\"assistant@acme\"",
        "Action::\"refund\"",
        "Tool::\"refund\"",
    );
    let kernel = d.explain(p, a, r, &context);
    assert!(!kernel.allowed(), "{kernel:?}");
    assert_eq!(kernel.erred, vec!["overflow".to_owned()], "{kernel:?}");
    let (allowed, _, errors) = d.explain_cedar(p, a, r, &context).expect("cedar");
    assert!(allowed, "Cedar skips the erroring forbid");
    assert_eq!(errors.len(), 1);

    // A small amount: both allow, by the same policies.
    let mut small = context.clone();
    small["input"]["amount"] = serde_json::json!(0);
    let kernel = d.explain(p, a, r, &small);
    let (allowed, ids, _) = d.explain_cedar(p, a, r, &small).expect("cedar");
    assert_eq!(kernel.allowed(), allowed);
    let kernel_ids: Vec<String> = kernel.policies.iter().map(|p| p.id.clone()).collect();
    assert_eq!(kernel_ids, ids);
}

/// Errors point at the file and place that hold them (issue 16, 3).
#[test]
fn schema_and_policy_errors_name_the_place_that_holds_them() {
    let schema = read(&root().join("schema.cedarschema")).expect("schema");
    // The last declaration left unterminated: Cedar's parser trips over the generated text that
    // follows, but the error is the schema file's.
    let text = schema.text.trim_end().trim_end_matches(';').to_owned();
    let errs = errors_of(Deployment::builder(Source::new("schema.cedarschema", text)).build());
    assert!(
        matches!(&errs[..], [LoadError::Schema { at, .. }] if at.file == "schema.cedarschema"),
        "{errs:?}"
    );

    // An empty schema is said to be empty, once, instead of every policy failing against it.
    let errs = errors_of(
        Deployment::builder(Source::new("schema.cedarschema", "// nothing\n\n"))
            .policies(Source::new(
                "p.cedar",
                "@id(\"p\") permit (principal, action, resource);",
            ))
            .build(),
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].to_string().contains("empty"), "{errs:?}");

    // A policy without `@id` still has its other errors reported.
    let errs = errors_of(
        base_builder()
            .policies(Source::new(
                "noid.cedar",
                "permit (principal, action == Action::\"call_model\", resource) when { context.nope };",
            ))
            .build(),
    );
    assert!(
        errs.iter()
            .any(|e| matches!(e, LoadError::MissingId { .. })),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| matches!(e, LoadError::Validation { at, message, .. } if at.file == "noid.cedar" && message.contains("nope"))),
        "{errs:?}"
    );

    // A property name with a control character is the tool file's error, not the generated
    // schema's.
    let tool = r#"{"name": "ctl", "risk": "low", "input_schema": {"type": "object", "properties": {"a\u0007b": {"type": "string"}}}}"#;
    let errs = errors_of(
        base_builder()
            .tools_json(Source::new("ctl.json", tool))
            .build(),
    );
    assert!(
        matches!(&errs[..], [LoadError::Tool { at, tool, message }] if at.file == "ctl.json" && tool == "ctl" && message.contains("control")),
        "{errs:?}"
    );
}

/// A forbid whose condition overflows on a constant errors on every request: Cedar would skip it,
/// the kernel would deny everything it scopes. `check` refuses it; an overflow that depends on the
/// request, or sits where evaluation may not reach, is left to run time (issue 16, 3).
#[test]
fn a_policy_that_errors_on_every_request_is_refused() {
    let load = |text: &str| {
        base_builder()
            .policies(Source::new("c.cedar", text.to_owned()))
            .build()
    };
    for always in [
        "@id(\"c\") forbid (principal, action == Action::\"call_model\", resource) when { 9223372036854775807 + 1 > 0 };",
        "@id(\"c\") forbid (principal, action == Action::\"call_model\", resource) when { context.estimated_tokens > 4611686018427387904 * 4 };",
        "@id(\"c\") forbid (principal, action == Action::\"call_model\", resource) unless { (0 - 9223372036854775807 - 2) < context.estimated_tokens && true };",
    ] {
        let errs = errors_of(load(always));
        assert!(
            errs.iter().any(|e| matches!(e, LoadError::Validation { policy, message, .. } if policy == "c" && message.contains("every request"))),
            "{always}: {errs:?}"
        );
    }
    for sometimes in [
        "@id(\"c\") forbid (principal, action == Action::\"call_model\", resource) when { context.estimated_tokens * 4611686018427387904 > 0 };",
        "@id(\"c\") forbid (principal, action == Action::\"call_model\", resource) when { context.estimated_tokens > 5 && 9223372036854775807 + 1 > 0 };",
        "@id(\"c\") forbid (principal, action == Action::\"call_model\", resource) when { context.estimated_tokens > 9223372036854775806 + 1 };",
    ] {
        assert!(load(sometimes).is_ok(), "{sometimes}");
    }
}
