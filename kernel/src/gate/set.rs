//! One candidate set: policies the gate decides a request against together.

use std::sync::OnceLock;

use cedar_policy::{Policy, PolicySet};

use super::compiled::Compiled;

/// A Cedar policy set and, once a request needs it, its policies compiled for the kernel's own
/// evaluator (see [`super::compiled`]). Compiling waits for the first request so that a deployment
/// of 100,000 tenant policies pays only for the tenants it serves.
#[derive(Default)]
pub(crate) struct Candidate {
    pub cedar: PolicySet,
    compiled: OnceLock<Option<Vec<Compiled>>>,
}

impl Candidate {
    /// Adds `policy`; false when its id is already in the set.
    pub fn add(&mut self, policy: Policy) -> bool {
        self.compiled = OnceLock::new();
        self.cedar.add(policy).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.cedar.is_empty()
    }

    /// Every policy of the set compiled; `None` when one of them cannot be, and Cedar decides the
    /// set.
    pub fn compiled(&self) -> Option<&[Compiled]> {
        self.compiled
            .get_or_init(|| self.cedar.policies().map(Compiled::new).collect())
            .as_deref()
    }
}

impl From<PolicySet> for Candidate {
    fn from(cedar: PolicySet) -> Self {
        Self {
            cedar,
            compiled: OnceLock::new(),
        }
    }
}
