//! The identity of a policy bundle as every decision records it. A leaf, so that decisions (in
//! the gate) and events can name the bundle without knowing how a deployment is built.

use serde::{Deserialize, Serialize};

/// Content hashes of what was in force, so a decision can be re-checked against the exact bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleHashes {
    /// SHA-256 of every policy's id and text, in id order.
    pub policies: String,
    /// SHA-256 of the full schema text (base plus generated).
    pub schema: String,
    /// SHA-256 of the canonical JSON of every entity (files plus generated tools).
    pub entities: String,
}
