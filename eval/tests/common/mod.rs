//! Helpers shared by the eval integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Copies a directory tree (a scratch copy of `policies/` to break things in).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A schema of its own in the PostgreSQL database `.ci/run` starts (`ARBITER_PG_URL`), dropped
/// when this is; `None` (with a message) when there is no server and none is required
/// (`ARBITER_REQUIRE_POSTGRES` makes its absence fail instead).
pub struct PgSchema {
    /// The connection string with the schema as its search path.
    pub url: String,
    base: String,
    schema: String,
}

impl PgSchema {
    pub fn new(name: &str) -> Option<Self> {
        let Some(base) = std::env::var("ARBITER_PG_URL").ok() else {
            assert!(
                std::env::var_os("ARBITER_REQUIRE_POSTGRES").is_none(),
                "ARBITER_REQUIRE_POSTGRES is set but ARBITER_PG_URL is not"
            );
            eprintln!("SKIPPED: no ARBITER_PG_URL (a PostgreSQL server to test against)");
            return None;
        };
        let schema = format!("{name}_{}", std::process::id());
        let mut admin = postgres::Client::connect(&base, postgres::NoTls).expect("connect");
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .expect("schema");
        let url = if base.contains("://") {
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-csearch_path%3D{schema}")
        } else {
            format!("{base} options='-c search_path={schema}'")
        };
        Some(Self { url, base, schema })
    }

    /// A client on the schema, for what a test checks or breaks behind the store's back.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect")
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.base, postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema));
        }
    }
}

/// A session of carol@shopco with the support agent and shopco's budget, enforcing.
pub fn shopco(id: &str) -> kernel::SessionConfig {
    kernel::SessionConfig {
        id: id.into(),
        tenant: "shopco".into(),
        user: "carol@shopco".into(),
        agent: "support@shopco".into(),
        budget: "shopco".into(),
        mode: kernel::Mode::Enforce,
    }
}

/// An empty directory of its own under the system's temporary one (emptied if a run left it).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("arbiter-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}
