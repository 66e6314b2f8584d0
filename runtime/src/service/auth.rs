//! Bearer tokens: each maps to one tenant and one user, and is stored only as its SHA-256, so a
//! leaked tokens file grants nothing.
//!
//! The file is TOML, one `[[token]]` table per token:
//! ```toml
//! [[token]]
//! sha256 = "9f86d0…"   # hex SHA-256 of the token
//! tenant = "shopco"
//! user = "carol@shopco"
//! admin = false        # may reload policies
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use kernel::Source;

use crate::error::FileError;

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant every session it touches must belong to.
    pub tenant: String,
    /// The `User` entity it approves, rejects, cancels and endorses as.
    pub user: String,
    /// Whether it may reload the policies.
    pub admin: bool,
}

/// The tokens a service accepts, by hash.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: HashMap<String, Caller>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    sha256: String,
    tenant: String,
    user: String,
    #[serde(default)]
    admin: bool,
}

/// The hex SHA-256 of a token, as the tokens file stores it.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (32 bytes from the OS, hex).
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("arb_{}", hex::encode(bytes)))
}

impl Tokens {
    /// Reads a tokens file; a problem names the file, line and column.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError::Io {
            path: path.into(),
            source: e,
        })?;
        Self::parse(&Source::new(path.display().to_string(), text))
    }

    /// Parses a tokens file.
    pub fn parse(source: &Source) -> Result<Self, FileError> {
        let file: TokenFile = toml::from_str(&source.text).map_err(|e| {
            let span = e.span().map(|s| (s.start, s.len()));
            FileError::invalid(source, span, e.message())
        })?;
        let mut tokens = Self::default();
        for (i, t) in file.token.into_iter().enumerate() {
            let valid = t.sha256.len() == 64 && t.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid || t.tenant.is_empty() || t.user.is_empty() {
                let at = source.text.find(&t.sha256).map(|o| (o, t.sha256.len()));
                return Err(FileError::invalid(
                    source,
                    at,
                    &format!(
                        "token[{i}]: `sha256` must be 64 hex digits, `tenant` and `user` non-empty"
                    ),
                ));
            }
            tokens.insert(&t.sha256.to_ascii_lowercase(), t.tenant, t.user, t.admin);
        }
        Ok(tokens)
    }

    /// Accepts the token whose hash is `sha256`.
    pub fn insert(&mut self, sha256: &str, tenant: String, user: String, admin: bool) {
        self.by_hash.insert(
            sha256.to_owned(),
            Caller {
                tenant,
                user,
                admin,
            },
        );
    }

    /// Who `token` acts as, if it is known.
    pub fn caller(&self, token: &str) -> Option<&Caller> {
        self.by_hash.get(&hash(token))
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// True when no token is accepted (every request is refused).
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}
