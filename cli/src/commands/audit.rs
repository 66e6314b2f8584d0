//! `arbiter audit`: verify hash chains (JSONL file or SQLite store) and re-check recorded decisions.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use kernel::event::verify_jsonl;
use miette::miette;
use runtime::store::sqlite::SqliteStore;

/// Where audited events live: `sqlite:PATH`, or a JSONL file.
pub enum Source {
    Jsonl(PathBuf),
    Sqlite(PathBuf),
}

impl Source {
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("sqlite:") {
            Some(path) => Self::Sqlite(PathBuf::from(path)),
            None => Self::Jsonl(PathBuf::from(text)),
        }
    }
}

/// Opens (creating if needed) the store a `--store sqlite:PATH` option names.
pub fn store_option(text: &str) -> miette::Result<SqliteStore> {
    let Source::Sqlite(path) = Source::parse(text) else {
        return Err(miette!("--store takes `sqlite:PATH`, got `{text}`"));
    };
    SqliteStore::open(&path).map_err(|e| miette!("{}: {e}", path.display()))
}

/// Opens an existing store (never creates one: auditing a typo'd path must not succeed empty).
pub fn open_store(path: &Path) -> miette::Result<SqliteStore> {
    if !path.is_file() {
        return Err(miette!("no store at {}", path.display()));
    }
    SqliteStore::open(path).map_err(|e| miette!("{}: {e}", path.display()))
}

pub fn verify(source: &str) -> miette::Result<ExitCode> {
    match Source::parse(source) {
        Source::Jsonl(file) => verify_file(&file),
        Source::Sqlite(path) => {
            let store = open_store(&path)?;
            let results = eval::audit::verify(&store).map_err(|e| miette!("{e}"))?;
            let mut bad = 0;
            let mut events = 0;
            for v in &results {
                let (tenant, id) = &v.session;
                match &v.result {
                    Ok(Ok(summary)) => events += summary.events,
                    Ok(Err(e)) => {
                        bad += 1;
                        println!("{tenant}/{id}: TAMPERED at {e}");
                    }
                    Err(e) => {
                        bad += 1;
                        println!("{tenant}/{id}: UNREADABLE: {e}");
                    }
                }
            }
            if bad == 0 {
                println!(
                    "ok: {events} events in {} session(s), every chain intact",
                    results.len()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{bad} of {} session(s) failed verification", results.len());
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

fn verify_file(file: &Path) -> miette::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| miette!("cannot read {}: {e}", file.display()))?;
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

#[derive(clap::Args)]
pub struct RecheckArgs {
    /// The store: `sqlite:PATH`.
    source: String,
    /// Re-check against this policy directory instead of each session's recorded bundle.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// With `--policies`: the packs to load on top of `base`.
    #[arg(long = "pack")]
    packs: Vec<String>,
}

pub fn recheck(args: &RecheckArgs) -> miette::Result<ExitCode> {
    let Source::Sqlite(path) = Source::parse(&args.source) else {
        return Err(miette!(
            "recheck needs the recorded steps, which a store keeps: give `sqlite:PATH` (a JSONL \
             log holds events only)"
        ));
    };
    let store = open_store(&path)?;
    let against = match &args.policies {
        Some(dir) => {
            let packs: Vec<&str> = args.packs.iter().map(String::as_str).collect();
            Some(Arc::new(kernel::pack::load_packs(dir, &packs)?))
        }
        None => None,
    };
    let reports = eval::audit::recheck(&store, against).map_err(|e| miette!("{e}"))?;
    let (mut decisions, mut differing, mut failed) = (0, 0, 0);
    for r in &reports {
        let (tenant, id) = &r.session;
        decisions += r.decisions;
        if let Some(e) = &r.error {
            failed += 1;
            println!("{tenant}/{id}: CANNOT RECHECK: {e}");
            continue;
        }
        for d in &r.differences {
            differing += 1;
            println!(
                "{tenant}/{id} seq {}: recorded {}, now {}",
                d.seq, d.recorded, d.now
            );
        }
    }
    println!(
        "{} session(s), {decisions} decisions re-checked: {differing} differ, {failed} session(s) could not be re-checked",
        reports.len()
    );
    Ok(if differing == 0 && failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
