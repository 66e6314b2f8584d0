//! `arbiter report --out DIR`: the compliance report as `report.md` and a self-contained
//! `report.html` (see `eval::report`).

use std::path::PathBuf;
use std::process::ExitCode;

use miette::miette;

#[derive(clap::Args)]
pub struct Args {
    /// Where to write `report.md` and `report.html` (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// The policy directory.
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// Scenario files or directories.
    #[arg(long = "scenarios", default_value = "scenarios")]
    scenarios: Vec<PathBuf>,
    /// A store to verify (`sqlite:PATH`, or an export) and report on.
    #[arg(long)]
    store: Option<String>,
    /// With `--store`: the signer's public key; every session's signed head is checked too.
    #[arg(long, requires = "store")]
    key: Option<String>,
    /// The solver for the proofs (default `$CVC5` or `cvc5`); without one the report says so.
    #[arg(long)]
    solver: Option<String>,
    /// Leave mutation testing out (it replays the suite once per mutant).
    #[arg(long)]
    no_mutate: bool,
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let files = eval::scenario_files(&args.scenarios)?;
    let props_path = args.policies.join("properties.toml");
    let properties = if props_path.is_file() {
        let dir = props_path
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        Some((eval::prove::properties::load(&props_path)?, dir))
    } else {
        None
    };
    let store = match &args.store {
        Some(source) => {
            let key = args
                .key
                .as_deref()
                .map(super::audit::public_key)
                .transpose()?;
            let opened = super::audit::open_audited(source)?.ok_or_else(|| {
                miette!("{source}: the report verifies a store or an export, not a plain event log")
            })?;
            let trust = key
                .as_ref()
                .map(|key| eval::audit::Trust { key, witness: None });
            let report = eval::audit::verify(opened.as_ref(), trust.as_ref())
                .map_err(|e| miette!("{source}: {e}"))?;
            Some((source.clone(), report))
        }
        None => None,
    };
    let report = eval::report::gather(eval::report::Inputs {
        policies: &args.policies,
        scenarios: &files,
        properties,
        solver: eval::prove::SolverSpec::find(args.solver.as_deref()),
        store,
        mutate: !args.no_mutate,
    });
    std::fs::create_dir_all(&args.out)
        .map_err(|e| miette!("cannot create {}: {e}", args.out.display()))?;
    for (name, text) in [
        ("report.md", eval::report::render::markdown(&report)),
        ("report.html", eval::report::render::html(&report)),
    ] {
        let path = args.out.join(name);
        // Written whole to a temporary name, then renamed: a reader never sees half a report.
        let tmp = args.out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| miette!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| miette!("cannot write {}: {e}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
