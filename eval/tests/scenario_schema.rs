//! `scenarios/scenario.schema.json` is generated from the scenario types; it must be current, and
//! every shipped scenario must validate against it.
//! Regenerate with `cargo run -p arbiter -- scenario-schema > scenarios/scenario.schema.json`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

fn scenarios() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

#[test]
fn the_published_schema_is_current() {
    let path = scenarios().join("scenario.schema.json");
    let published: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file"))
            .expect("schema is JSON");
    assert_eq!(
        published,
        eval::scenario::json_schema(),
        "regenerate {}",
        path.display()
    );
}

#[test]
fn every_shipped_scenario_validates_against_the_schema() {
    let validator =
        jsonschema::validator_for(&eval::scenario::json_schema()).expect("valid schema");
    let files = eval::scenario_files(&[scenarios()]).expect("scenarios");
    assert!(files.len() >= 20, "{} scenarios", files.len());
    for file in files {
        let value: toml::Value =
            toml::from_str(&std::fs::read_to_string(&file).expect("read")).expect("toml");
        let json = serde_json::to_value(value).expect("json");
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    }

    // And the schema does catch mistakes an editor should flag.
    let bad = serde_json::json!({"name": "x", "mode": "sometimes", "session": {}, "expect": {"status": "done"}});
    assert!(!validator.is_valid(&bad));
}
