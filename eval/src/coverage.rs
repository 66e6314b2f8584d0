//! Policy coverage: which policies decided which of the suite's decisions. A policy that decided
//! nothing in any scenario is one the suite would not notice losing — the first place to add a
//! scenario. A policy counts as exercised when it is among a decision's determining policies
//! (Cedar's "reason": the satisfied permits of an allow, the satisfied forbids of a deny) or among
//! those that erred; a forbid that never held, or a permit never needed, is not exercised.
//!
//! Each clause and operand seen both true and false is [`conditions`]' finer measure.

pub mod conditions;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::runner::FileResult;

/// Which scenarios each policy decided something in.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    /// Every policy of every policy set the suite ran under, with the scenarios where it decided.
    pub policies: BTreeMap<String, BTreeSet<String>>,
    /// Scenarios that could not run, with why (their policies are not counted).
    pub errors: Vec<(String, String)>,
}

impl Coverage {
    /// The share of policies exercised, in percent (100 for no policies).
    pub fn percent(&self) -> f64 {
        let total = self.policies.len();
        if total == 0 {
            return 100.0;
        }
        let hit = self.policies.values().filter(|s| !s.is_empty()).count();
        hit as f64 * 100.0 / total as f64
    }

    /// Policies no scenario exercised, sorted.
    pub fn unexercised(&self) -> Vec<&str> {
        self.policies
            .iter()
            .filter(|(_, s)| s.is_empty())
            .map(|(p, _)| p.as_str())
            .collect()
    }
}

/// The coverage of a suite's results.
pub fn of(results: &[FileResult]) -> Coverage {
    let mut coverage = Coverage::default();
    for r in results {
        let name = r.path.display().to_string();
        let ran = match &r.outcome {
            Ok(ran) => ran,
            Err(e) => {
                coverage.errors.push((name, e.to_string()));
                continue;
            }
        };
        for id in ran.deployment.policy_ids() {
            coverage.policies.entry(id).or_default();
        }
        for d in ran.run.events.iter().filter_map(|e| e.decision.as_ref()) {
            let ids = d.policies.iter().map(|p| &p.id).chain(d.erred.iter());
            for id in ids {
                coverage
                    .policies
                    .entry(id.clone())
                    .or_default()
                    .insert(name.clone());
            }
        }
    }
    coverage
}
