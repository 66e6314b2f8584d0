//! Replays every scenario in `scenarios/` and snapshots its event stream with `insta`.
//! Snapshots sit beside their scenarios, in `snapshots/`; review changes with `cargo insta review`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// Expectations are checked after the snapshot, and reported at the end: a policy edit then shows
/// every changed stream's diff, not just the first scenario whose expectations it breaks.
#[test]
fn every_scenario_event_stream_matches_its_snapshot() {
    let mut unmet = Vec::new();
    insta::glob!("../../scenarios", "**/*.toml", |path| {
        let (loaded, run, failures) = match eval::run_file(path) {
            Ok(r) => r,
            Err(e) => panic!("{}: {e}", path.display()),
        };
        for f in &failures {
            eprintln!("{}: {f:?}", path.display());
        }
        if !failures.is_empty() {
            unmet.push(path.display().to_string());
        }
        let dir = path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("snapshots");
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(dir);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_snapshot_suffix("");
        settings.set_description(loaded.scenario.name.clone());
        settings.set_omit_expression(true);
        settings.bind(|| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            insta::assert_snapshot!(name, eval::snapshot::render(&run.events));
        });
    });
    assert!(unmet.is_empty(), "expectations not met: {unmet:?}");
}
