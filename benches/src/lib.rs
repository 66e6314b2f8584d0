//! Fixtures shared by the criterion benchmarks in `benches/benches/`.

use std::path::PathBuf;
use std::sync::Arc;

use kernel::{Deployment, Intent, Mode, Session, SessionConfig, pack::load_packs};

/// The shipped `policies/` directory.
pub fn policies_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// The base + demo deployment.
pub fn demo() -> Arc<Deployment> {
    match load_packs(&policies_root(), &["demo"]) {
        Ok(d) => Arc::new(d),
        Err(e) => panic!("shipped packs must load: {e}"),
    }
}

/// A started acme session in enforce mode.
pub fn started(deployment: &Arc<Deployment>) -> Session {
    let config = SessionConfig {
        id: "bench".into(),
        tenant: "acme".into(),
        user: "alice@acme".into(),
        agent: "assistant@acme".into(),
        budget: "acme".into(),
        mode: Mode::Enforce,
    };
    let mut s = match Session::new(Arc::clone(deployment), config) {
        Ok(s) => s,
        Err(e) => panic!("bench session: {e}"),
    };
    if let Err(e) = s.step(
        Intent::Start {
            request: "bench".into(),
        },
        0,
    ) {
        panic!("start: {}", e.error);
    }
    s
}
