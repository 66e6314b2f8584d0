//! Crash recovery for real: `arbiter play` runs a scripted agent whose tool is a real program
//! appending to a file, and is killed with SIGKILL at 50+ pseudo-random points, then started again
//! until the session completes. Every completed log must verify (its signed end included) and
//! re-check, hold each call's
//! result once, and the side-effect file must hold each call exactly once — no lost event, no
//! duplicated effect.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../eval/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kernel::EventBody;
use runtime::store::SessionStore;
use runtime::store::sqlite::SqliteStore;

const KILLS: usize = 50;

/// The runs sign their checkpoints with this seed (through `ARBITER_SIGNING_KEY`).
const SEED: &str = "0101010101010101010101010101010101010101010101010101010101010101";

/// An idempotent tool: appends its call id under a lock unless already there, then lingers, so
/// kills land between the effect and the recorded result.
fn tool(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("append.sh");
    let notes = dir.join("notes");
    let lock = dir.join("notes.lock");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat > /dev/null\nflock {lock} sh -c 'grep -qx \"$ARBITER_CALL_ID\" {notes} 2>/dev/null || echo \"$ARBITER_CALL_ID\" >> {notes}'\nsleep 0.04\necho '{{\"appended\": true}}'\n",
            lock = lock.display(),
            notes = notes.display()
        ),
    )
    .expect("write tool");
    let status = Command::new("chmod").arg("+x").arg(&script).status();
    assert!(status.is_ok_and(|s| s.success()));
    script
}

fn play(db: &Path, tool: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args([
            "play",
            "scenarios/recovery/append_notes.toml",
            "--store",
            &format!("sqlite:{}", db.display()),
            "--tool",
            &format!("append_note={}", tool.display()),
        ])
        .current_dir(common::repo())
        .env("ARBITER_SIGNING_KEY", SEED)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn arbiter")
}

#[test]
fn sigkill_at_random_points_loses_nothing_and_duplicates_nothing() {
    let dir = std::env::temp_dir().join(format!("arbiter-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let tool = tool(&dir);
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |bound: u64| {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (rng >> 33) % bound
    };
    let (mut kills, mut runs, mut in_doubt) = (0, 0, 0);
    while kills < KILLS {
        runs += 1;
        let db = dir.join(format!("run{runs}.db"));
        let _ = std::fs::remove_file(dir.join("notes"));
        let mut finished = false;
        for _ in 0..60 {
            let mut child = play(&db, &tool);
            std::thread::sleep(Duration::from_millis(next(450)));
            if child.try_wait().expect("try_wait").is_none() {
                child.kill().expect("SIGKILL");
                let _ = child.wait();
                kills += 1;
                continue;
            }
            let out = child.wait_with_output().expect("output");
            assert!(
                out.status.success(),
                "run {runs}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            finished = true;
            break;
        }
        assert!(finished, "run {runs} never completed");
        in_doubt += check(&db, &dir.join("notes"), runs);
    }
    assert!(kills >= KILLS);
    assert!(
        in_doubt > 0,
        "no kill landed between an effect and its record in {runs} runs"
    );
    eprintln!("{kills} kills over {runs} runs, {in_doubt} calls resumed in doubt");
}

/// The completed run's log and side effects; returns how many calls were in doubt.
fn check(db: &Path, notes: &Path, run: usize) -> usize {
    let store = SqliteStore::open(db).expect("open store");
    let sessions = store.sessions().expect("sessions");
    assert_eq!(sessions.len(), 1);
    let (tenant, id) = &sessions[0];
    let stored = store.load(tenant, id).expect("load");
    assert!(
        matches!(
            stored.events.last().map(|e| &e.body),
            Some(EventBody::Completed { .. })
        ),
        "run {run}: not completed"
    );
    // Signed through every crash: the end and its checkpoint were written in one transaction.
    let key = runtime::store::SigningKey::from_hex(SEED)
        .expect("seed")
        .public();
    let trust = eval::audit::Trust {
        key: &key,
        witness: None,
    };
    let verified = eval::audit::verify(&store, Some(&trust)).expect("verify");
    assert!(
        matches!(verified.sessions[0].result, Ok(Ok(_))),
        "run {run}: chain broken"
    );
    assert_eq!(
        verified.sessions[0].signature,
        Some(eval::audit::Signature::Signed),
        "run {run}: the ended session is not signed"
    );
    assert!(!verified.manifest.expect("manifest").failed(), "run {run}");
    let rechecked = eval::audit::recheck(&store, None).expect("recheck");
    assert!(
        rechecked[0].error.is_none() && rechecked[0].differences.is_empty(),
        "run {run}: {:?}",
        rechecked[0]
    );
    let returned: Vec<String> = stored
        .events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ToolReturned { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    let unique: BTreeSet<&String> = returned.iter().collect();
    assert_eq!(returned.len(), 6, "run {run}: {returned:?}");
    assert_eq!(
        unique.len(),
        6,
        "run {run}: a result recorded twice: {returned:?}"
    );
    let text = std::fs::read_to_string(notes).expect("notes");
    let lines: Vec<&str> = text.lines().collect();
    let appended: BTreeSet<&str> = lines.iter().copied().collect();
    assert_eq!(
        lines.len(),
        appended.len(),
        "run {run}: an effect ran twice: {lines:?}"
    );
    let expected: BTreeSet<&str> = unique.iter().map(|s| s.as_str()).collect();
    assert_eq!(appended, expected, "run {run}: effects and log disagree");
    stored
        .events
        .iter()
        .filter(|e| matches!(e.body, EventBody::CallInDoubt { .. }))
        .count()
}
