//! `arbiter audit`: verify hash chains and signatures (a JSONL log, an export or a SQLite store),
//! re-check recorded sessions, and export a store for a reviewer.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use eval::audit::{Signature, StoreReport, Trust, Verified};
use kernel::event::verify_jsonl;
use miette::miette;
use runtime::store::PostgresStore;
use runtime::store::sqlite::SqliteStore;
use runtime::store::{PublicKey, SessionStore, Signed, SigningKey, export};

/// The environment variable that may hold the signing key (its hex seed) instead of a key file.
pub const SIGNING_KEY_ENV: &str = "ARBITER_SIGNING_KEY";

/// Where audited events live: `sqlite:PATH`, or a JSONL file (a plain event log or an export).
pub enum Source {
    Jsonl(PathBuf),
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgres://...` or `postgresql://...`).
    Postgres(String),
}

impl Source {
    pub fn parse(text: &str) -> Self {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Self::Postgres(text.to_owned());
        }
        match text.strip_prefix("sqlite:") {
            Some(path) => Self::Sqlite(PathBuf::from(path)),
            None => Self::Jsonl(PathBuf::from(text)),
        }
    }
}

/// The signing key: from `--signing-key FILE`, else from [`SIGNING_KEY_ENV`], else none.
pub fn signing_key(file: Option<&Path>) -> miette::Result<Option<SigningKey>> {
    let (text, from) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| miette!("cannot read the signing key {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::env::var(SIGNING_KEY_ENV) {
            Ok(text) => (text, SIGNING_KEY_ENV.to_owned()),
            Err(_) => return Ok(None),
        },
    };
    SigningKey::from_hex(&text)
        .map(Some)
        .map_err(|e| miette!("{from}: {e}"))
}

/// Opens (creating if needed) the store a `--store sqlite:PATH` option names; with a signing key,
/// every session's head is signed as it runs.
pub fn store_option(text: &str, key: Option<SigningKey>) -> miette::Result<Arc<dyn SessionStore>> {
    match Source::parse(text) {
        Source::Sqlite(path) => {
            let store = SqliteStore::open(&path).map_err(|e| miette!("{}: {e}", path.display()))?;
            Ok(match key {
                Some(key) => Arc::new(Signed::new(store, key)),
                None => Arc::new(store),
            })
        }
        Source::Postgres(url) => {
            let store =
                PostgresStore::open(&url).map_err(|e| miette!("{}: {e}", redacted(&url)))?;
            Ok(match key {
                Some(key) => Arc::new(Signed::new(store, key)),
                None => Arc::new(store),
            })
        }
        Source::Jsonl(_) => Err(miette!(
            "--store takes `sqlite:PATH` or `postgres://...`, got `{text}`"
        )),
    }
}

/// [`store_option`] and, for a PostgreSQL store, the store itself (what `serve` clusters on).
pub fn store_and_database(
    text: &str,
    key: Option<SigningKey>,
) -> miette::Result<(Arc<dyn SessionStore>, Option<PostgresStore>)> {
    match Source::parse(text) {
        Source::Postgres(url) => {
            let store =
                PostgresStore::open(&url).map_err(|e| miette!("{}: {e}", redacted(&url)))?;
            let shared: Arc<dyn SessionStore> = match key {
                Some(key) => Arc::new(Signed::new(store.clone(), key)),
                None => Arc::new(store.clone()),
            };
            Ok((shared, Some(store)))
        }
        _ => Ok((store_option(text, key)?, None)),
    }
}

/// A connection string without its password, for messages.
fn redacted(url: &str) -> String {
    let parts = url.find("://").zip(url.find('@')).and_then(|(scheme, at)| {
        let user_pass = url.get(scheme + 3..at)?;
        user_pass.contains(':').then(|| {
            let user = user_pass.split(':').next().unwrap_or_default();
            format!(
                "{}{user}:***{}",
                url.get(..scheme + 3).unwrap_or_default(),
                url.get(at..).unwrap_or_default()
            )
        })
    });
    parts.unwrap_or_else(|| url.to_owned())
}

/// Opens an existing store or reads an export (never creates a store: auditing a typo'd path must
/// not succeed empty). `None` for a plain JSONL event log.
pub(super) fn open_audited(source: &str) -> miette::Result<Option<Box<dyn SessionStore>>> {
    match Source::parse(source) {
        Source::Sqlite(path) => {
            if !path.is_file() {
                return Err(miette!("no store at {}", path.display()));
            }
            let store = SqliteStore::open(&path).map_err(|e| miette!("{}: {e}", path.display()))?;
            Ok(Some(Box::new(store)))
        }
        Source::Postgres(url) => {
            let store =
                PostgresStore::open(&url).map_err(|e| miette!("{}: {e}", redacted(&url)))?;
            Ok(Some(Box::new(store)))
        }
        Source::Jsonl(file) => {
            let text = read(&file)?;
            if !export::is_export(&text) {
                return Ok(None);
            }
            let store = export::read(&text).map_err(|e| miette!("{}: {e}", file.display()))?;
            Ok(Some(Box::new(store)))
        }
    }
}

fn read(file: &Path) -> miette::Result<String> {
    std::fs::read_to_string(file).map_err(|e| miette!("cannot read {}: {e}", file.display()))
}

/// A public key given as hex or as a file holding it.
pub(super) fn public_key(text: &str) -> miette::Result<PublicKey> {
    let hex = if Path::new(text).is_file() {
        read(Path::new(text))?
    } else {
        text.to_owned()
    };
    PublicKey::from_hex(&hex).map_err(|e| miette!("--key {text}: {e}"))
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// A JSONL event log, an export (`audit export`), or `sqlite:PATH`.
    source: String,
    /// The signer's public key (hex, or a file holding it): every session must be signed by it.
    #[arg(long)]
    key: Option<String>,
    /// With `--key`: a checkpoint hash an earlier verify printed; fails if the store no longer
    /// holds it (the store was rolled back past it).
    #[arg(long, requires = "key")]
    witness: Option<String>,
}

pub fn verify(args: &VerifyArgs) -> miette::Result<ExitCode> {
    let key = args.key.as_deref().map(public_key).transpose()?;
    let Some(store) = open_audited(&args.source)? else {
        if key.is_some() {
            return Err(miette!(
                "{}: a plain event log carries no signatures; verify the store, or an export of it \
                 (`arbiter audit export`), with --key",
                args.source
            ));
        }
        return verify_file(Path::new(&args.source));
    };
    let trust = key.as_ref().map(|key| Trust {
        key,
        witness: args.witness.as_deref(),
    });
    let report = eval::audit::verify(store.as_ref(), trust.as_ref()).map_err(|e| miette!("{e}"))?;
    Ok(print_report(&report))
}

fn print_report(report: &StoreReport) -> ExitCode {
    let mut failed = 0;
    let (mut intact, mut open, mut events) = (0, 0, 0);
    for v in &report.sessions {
        let (tenant, id) = &v.session;
        if let Some(line) = session_line(v) {
            println!("{tenant}/{id}: {line}");
        }
        if v.failed() {
            failed += 1;
        } else if v.closed {
            intact += 1;
        } else {
            open += 1;
        }
        events += v.events;
    }
    let signed = if report.manifest.is_some() {
        " and signed"
    } else {
        ""
    };
    if let Some(m) = &report.manifest {
        if let Some(p) = &m.problem {
            println!("manifest: TAMPERED: {p}; later checkpoints are not trusted");
        }
        for (tenant, id) in &m.deleted {
            println!(
                "{tenant}/{id}: DELETED: a signed checkpoint names it, the store does not hold it"
            );
        }
        if let Some(w) = &m.witness_missing {
            println!("manifest: ROLLED BACK: the witnessed checkpoint {w} is not in the store");
        }
        println!(
            "manifest: {} of {} checkpoint(s) verified; head {}",
            m.trusted,
            m.total,
            m.head.as_deref().unwrap_or("(none)")
        );
    }
    let manifest_failed = report.manifest.as_ref().is_some_and(|m| m.failed());
    let total = report.sessions.len();
    if failed == 0 && !manifest_failed {
        println!(
            "ok: {events} events in {total} session(s): {intact} ended, chain intact{signed}; {open} open (not ended: only their signed prefix is vouched for)"
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "{failed} of {total} session(s) failed verification{}",
            if manifest_failed {
                ", and the manifest did"
            } else {
                ""
            }
        );
        ExitCode::FAILURE
    }
}

/// The line a session gets, if it needs one (an intact, ended session does not).
fn session_line(v: &Verified) -> Option<String> {
    match &v.result {
        Ok(Err(e)) => return Some(format!("TAMPERED at {e}")),
        Err(e) => return Some(format!("UNREADABLE: {e}")),
        Ok(Ok(_)) => {}
    }
    let signature = match &v.signature {
        Some(Signature::Contradicted { events, head }) => {
            return Some(format!(
                "TAMPERED: a checkpoint signed {events} event(s) ending in {}, which this chain of {} does not hold (events removed, rewritten or added after the end)",
                head.get(..12).unwrap_or(head),
                v.events
            ));
        }
        Some(Signature::Missing) if v.closed => {
            return Some("UNSIGNED: the session ended but no checkpoint signs it".into());
        }
        Some(Signature::Partly { signed }) if v.closed => {
            return Some(format!(
                "STALE SIGNATURE: the session ended at event {} but the last checkpoint signs {signed}",
                v.events
            ));
        }
        Some(Signature::Missing) => ", none signed".to_owned(),
        Some(Signature::Partly { signed }) => format!(", {signed} signed"),
        Some(Signature::Signed) if !v.closed => ", all signed".to_owned(),
        Some(Signature::Signed) | None => String::new(),
    };
    (!v.closed).then(|| format!("OPEN: {} event(s){signature}, no end event", v.events))
}

fn verify_file(file: &Path) -> miette::Result<ExitCode> {
    let text = read(file)?;
    match verify_jsonl(&text) {
        Ok(summary) => {
            println!(
                "ok: {} events in {} session(s), every chain intact (an event log has no \
                 signatures: a cut-off end or a re-chained edit is not detected; verify a signed \
                 store or export with --key)",
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
    /// The store (`sqlite:PATH`) or an export (`audit export`).
    source: String,
    /// Re-check against this policy directory instead of each session's recorded bundle.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// With `--policies`: the packs to load on top of `base`.
    #[arg(long = "pack")]
    packs: Vec<String>,
}

pub fn recheck(args: &RecheckArgs) -> miette::Result<ExitCode> {
    let Some(store) = open_audited(&args.source)? else {
        return Err(miette!(
            "{}: recheck needs the recorded steps, which a store or an export keeps (a plain \
             event log holds events only): give `sqlite:PATH` or an `audit export` file",
            args.source
        ));
    };
    let against = match &args.policies {
        Some(dir) => {
            let packs: Vec<&str> = args.packs.iter().map(String::as_str).collect();
            Some(Arc::new(kernel::pack::load_packs(dir, &packs)?))
        }
        None => None,
    };
    let reports = eval::audit::recheck(store.as_ref(), against).map_err(|e| miette!("{e}"))?;
    let (mut checked, mut differing, mut failed) = (0, 0, 0);
    for r in &reports {
        let (tenant, id) = &r.session;
        checked += r.checked;
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
    let what = if args.policies.is_some() {
        "decisions re-decided"
    } else {
        "events replayed and compared byte for byte"
    };
    println!(
        "{} session(s), {checked} {what}: {differing} differ, {failed} session(s) could not be re-checked",
        reports.len()
    );
    Ok(if differing == 0 && failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The store: `sqlite:PATH`.
    source: String,
    /// Where to write (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn export(args: &ExportArgs) -> miette::Result<ExitCode> {
    let Source::Sqlite(path) = Source::parse(&args.source) else {
        return Err(miette!(
            "export reads a store: give `sqlite:PATH`, got `{}`",
            args.source
        ));
    };
    let Some(store) = open_audited(&args.source)? else {
        return Err(miette!("no store at {}", path.display()));
    };
    match &args.out {
        Some(out) => {
            // Written beside the target and renamed over it: never a half-written export.
            let tmp = out.with_extension("partial");
            let file = std::fs::File::create(&tmp)
                .map_err(|e| miette!("cannot write {}: {e}", tmp.display()))?;
            let mut w = std::io::BufWriter::new(file);
            export::write(store.as_ref(), &mut w).map_err(|e| miette!("{e}"))?;
            drop(w);
            std::fs::rename(&tmp, out)
                .map_err(|e| miette!("cannot write {}: {e}", out.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            export::write(store.as_ref(), &mut w).map_err(|e| miette!("{e}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// The private key file to create (its public key goes to `FILE.pub`). Refuses to overwrite.
    #[arg(long)]
    out: PathBuf,
}

pub fn keygen(args: &KeygenArgs) -> miette::Result<ExitCode> {
    let key = SigningKey::generate().map_err(|e| miette!("{e}"))?;
    let public = key.public().to_hex();
    let public_file = PathBuf::from(format!("{}.pub", args.out.display()));
    write_new(&args.out, &format!("{}\n", key.to_hex()), true)?;
    write_new(&public_file, &format!("{public}\n"), false)?;
    println!(
        "private key: {} (keep it outside the store)",
        args.out.display()
    );
    println!("public key:  {} = {public}", public_file.display());
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` (failing if it exists), readable by its owner only when `private`.
fn write_new(path: &Path, text: &str, private: bool) -> miette::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(path)
        .map_err(|e| miette!("cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| miette!("cannot write {}: {e}", path.display()))
}

#[derive(clap::Args)]
pub struct ScenarioArgs {
    /// The store (`sqlite:PATH`) or an export.
    source: String,
    /// The session: `TENANT/ID`.
    session: String,
    /// The policy directory the scenario loads (its packs, beside the recorded tools).
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// Packs the scenario loads on top of `base` (repeatable).
    #[arg(long = "pack")]
    packs: Vec<String>,
    /// The scenario file to write (refuses to overwrite).
    #[arg(long)]
    out: PathBuf,
}

/// Writes one recorded session as a scenario: its steps as raw intents, its bundle's registered
/// tools, its decisions as expectations (see `eval::recorded`).
pub fn scenario(args: &ScenarioArgs) -> miette::Result<ExitCode> {
    let Some(store) = open_audited(&args.source)? else {
        return Err(miette!(
            "{} is an event log, not a store or export",
            args.source
        ));
    };
    let (tenant, id) = args
        .session
        .split_once('/')
        .ok_or_else(|| miette!("the session is `TENANT/ID`, got `{}`", args.session))?;
    let stored = store
        .load(tenant, id)
        .map_err(|e| miette!("{}: {e}", args.session))?;
    let bundle = store
        .bundle(&stored.record.bundle)
        .map_err(|e| miette!("bundle {}: {e}", stored.record.bundle))?;
    let dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let scenario = eval::recorded::scenario_of(
        &stored.record.config,
        &stored.steps,
        &stored.events,
        &bundle,
        (dir, &args.policies, args.packs.clone()),
    );
    let text = toml::to_string(&scenario).map_err(|e| miette!("{e}"))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.out)
        .map_err(|e| miette!("cannot create {}: {e}", args.out.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| miette!("cannot write {}: {e}", args.out.display()))?;
    eprintln!(
        "{}: {} steps, {} decisions expected; `arbiter replay {}` shows it",
        args.out.display(),
        scenario.intents.len(),
        scenario.expect.decisions.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
