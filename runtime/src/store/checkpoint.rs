//! Signed checkpoints: what lets an auditor tell a store's history from a rewritten one.
//!
//! A hash chain alone is no defence against whoever can write the store: they can edit, drop or
//! truncate events and chain them again. A checkpoint is an Ed25519 signature, by a key kept
//! outside the store, over one session's chain head (`head`, the hash of event `events - 1`) and
//! whether that head ended the session. Checkpoints are themselves chained store-wide (`n`,
//! `prev`), so the sequence of checkpoints is the store's signed manifest: it names every session
//! ever signed and its last signed head. Without the private key nobody can add a checkpoint, alter
//! one, or remove one except from the end of the sequence (see the threat model in the README).
//!
//! A checkpoint's signature covers `arbiter-checkpoint/1\n` followed by the canonical JSON of
//! every field but `signature`; its `hash` (which the next checkpoint's `prev` names) covers every
//! field including the signature.

use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use kernel::event::{GENESIS, canonical_json, sha256_hex};

/// Domain separation: a checkpoint signature can never be mistaken for a signature over anything
/// else the same key might sign.
const DOMAIN: &[u8] = b"arbiter-checkpoint/1\n";

/// A signed chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Position in the store's sequence of checkpoints, from 0, without gaps.
    pub n: u64,
    /// [`Checkpoint::hash`] of checkpoint `n - 1`; [`GENESIS`] for the first.
    pub prev: String,
    /// The session's tenant.
    pub tenant: String,
    /// The session.
    pub session: String,
    /// How many events the signed chain holds.
    pub events: u64,
    /// The hash of the last of them.
    pub head: String,
    /// Whether that last event ended the session.
    pub closed: bool,
    /// The signer's public key, hex.
    pub key: String,
    /// Ed25519 over the other fields, hex.
    pub signature: String,
}

/// What a session's head is, for signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The tenant.
    pub tenant: String,
    /// The session.
    pub session: String,
    /// Events in the chain.
    pub events: u64,
    /// The last event's hash.
    pub head: String,
    /// Whether the last event ended the session.
    pub closed: bool,
}

/// Why a key could not be read or made.
#[derive(Debug, Error)]
pub enum KeyError {
    /// Not 64 hex digits.
    #[error("a key is 64 hex digits (32 bytes){0}")]
    Malformed(String),
    /// The bytes are not a point on the curve (public keys only).
    #[error("not an Ed25519 public key: {0}")]
    NotAKey(String),
    /// The operating system gave no randomness.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// Why a checkpoint does not check out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureProblem {
    /// Signed by another key than the one trusted.
    #[error("signed by key {found}, not the trusted key {trusted}")]
    WrongKey {
        /// The key named in the checkpoint.
        found: String,
        /// The trusted key.
        trusted: String,
    },
    /// The signature does not verify: the checkpoint was altered or forged.
    #[error("the signature does not verify (altered or forged)")]
    BadSignature,
}

/// The private half, which signs. Kept outside the store (a key file, an environment variable).
pub struct SigningKey(ed25519_dalek::SigningKey);

/// The public half, which an auditor trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

fn bytes32(text: &str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|e| {
        KeyError::Malformed(format!(", got {} character(s): {e}", text.chars().count()))
    })?;
    Ok(out)
}

impl SigningKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// A key from its 32-byte seed in hex (what [`SigningKey::to_hex`] writes).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&bytes32(text)?)))
    }

    /// The seed in hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `head` as checkpoint `n`, following the checkpoint whose hash is `prev`.
    pub fn sign(&self, n: u64, prev: String, head: Head) -> Checkpoint {
        let mut c = Checkpoint {
            n,
            prev,
            tenant: head.tenant,
            session: head.session,
            events: head.events,
            head: head.head,
            closed: head.closed,
            key: self.public().to_hex(),
            signature: String::new(),
        };
        c.signature = hex::encode(self.0.sign(&c.message()).to_bytes());
        c
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {})", self.public().to_hex())
    }
}

impl PublicKey {
    /// A public key in hex.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_bytes(&bytes32(text)?)
            .map(Self)
            .map_err(|e| KeyError::NotAKey(e.to_string()))
    }

    /// The key in hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }
}

impl Checkpoint {
    /// The first checkpoint's `prev`.
    pub fn genesis() -> String {
        GENESIS.to_owned()
    }

    /// What the signature covers.
    fn message(&self) -> Vec<u8> {
        let mut fields = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = fields.as_object_mut() {
            map.remove("signature");
        }
        let mut out = DOMAIN.to_vec();
        out.extend_from_slice(canonical_json(&fields).as_bytes());
        out
    }

    /// SHA-256 of the canonical JSON of every field: what the next checkpoint's `prev` names.
    pub fn hash(&self) -> String {
        let fields = serde_json::to_value(self).unwrap_or_default();
        sha256_hex(canonical_json(&fields).as_bytes())
    }

    /// Checks the signature against the trusted key.
    pub fn check(&self, trusted: &PublicKey) -> Result<(), SignatureProblem> {
        let trusted_hex = trusted.to_hex();
        if self.key != trusted_hex {
            return Err(SignatureProblem::WrongKey {
                found: self.key.clone(),
                trusted: trusted_hex,
            });
        }
        let mut raw = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut raw)
            .map_err(|_| SignatureProblem::BadSignature)?;
        let signature = ed25519_dalek::Signature::from_bytes(&raw);
        trusted
            .0
            .verify(&self.message(), &signature)
            .map_err(|_| SignatureProblem::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head {
            tenant: "t".into(),
            session: "s".into(),
            events: 3,
            head: "ab".repeat(32),
            closed: true,
        }
    }

    #[test]
    fn a_checkpoint_verifies_under_its_key_only_and_unaltered() {
        let key = SigningKey::generate().expect("key");
        let c = key.sign(0, Checkpoint::genesis(), head());
        assert_eq!(c.check(&key.public()), Ok(()));

        let other = SigningKey::generate().expect("key");
        assert!(matches!(
            c.check(&other.public()),
            Err(SignatureProblem::WrongKey { .. })
        ));

        for edit in [
            |c: &mut Checkpoint| c.events = 2,
            |c: &mut Checkpoint| c.closed = false,
            |c: &mut Checkpoint| c.session = "s2".into(),
            |c: &mut Checkpoint| c.n = 1,
            |c: &mut Checkpoint| c.prev = "00".repeat(31) + "01",
        ] {
            let mut forged = c.clone();
            edit(&mut forged);
            assert_eq!(
                forged.check(&key.public()),
                Err(SignatureProblem::BadSignature)
            );
            assert_ne!(forged.hash(), c.hash());
        }
    }

    #[test]
    fn keys_round_trip_through_hex_and_malformed_ones_are_refused() {
        let key = SigningKey::generate().expect("key");
        let again = SigningKey::from_hex(&key.to_hex()).expect("seed");
        assert_eq!(again.public(), key.public());
        assert_eq!(
            PublicKey::from_hex(&key.public().to_hex()).expect("public"),
            key.public()
        );
        assert!(matches!(
            SigningKey::from_hex("abc"),
            Err(KeyError::Malformed(_))
        ));
        assert!(PublicKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
