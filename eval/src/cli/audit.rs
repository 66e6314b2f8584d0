//! `arbiter audit verify`: check a JSONL log's hash chains.

use std::path::Path;
use std::process::ExitCode;

use kernel::event::verify_jsonl;

pub fn verify(file: &Path) -> miette::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| miette::miette!("cannot read {}: {e}", file.display()))?;
    match verify_jsonl(&text) {
        Ok(summary) => {
            println!(
                "ok: {} events in {} session(s), every chain intact",
                summary.events,
                summary.sessions.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}: TAMPERED at {e}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
