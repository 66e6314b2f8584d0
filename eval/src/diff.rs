//! Decision diff: what a policy edit changes, before it merges. Every scenario is replayed under
//! two policy directories (`base` and `head`, each standing in for the directory the scenario
//! names) and their decisions are paired as `expect` counts them — the nth proposal of each
//! action — so a change shows as "the 2nd `issue_refund`: deny by `support.refund.approval` →
//! allow by `base.permit.tools`". A change early in a run can change what follows; every pair that
//! differs is listed, and a proposal made under one set and not the other shows with one side
//! missing. With a store instead of scenarios (`log`), every recorded session's steps are
//! re-decided the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kernel::event::Event;
use serde::Serialize;
use serde_json::Value;

use crate::ScenarioError;
use crate::expect::occurrences;
use crate::replay::{deployment_at, replay};
use crate::scenario::load;

/// One side of a changed decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    /// `allow`, `deny`, or `rejected` (refused for its arguments before any policy ran).
    pub effect: String,
    /// The policies that decided it (those that erred, for an error denial).
    pub policies: Vec<String>,
}

/// A decision that differs between the two policy sets.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    /// The scenario file.
    pub scenario: String,
    /// The action (a tool name, `approve`, `spend_budget`...).
    pub action: String,
    /// Which proposal of that action, from 1.
    pub nth: usize,
    /// What was asked (the event that carries the decision under `base`, else under `head`).
    pub request: Value,
    /// Under the base set; `None` when that run never made this proposal.
    pub base: Option<Side>,
    /// Under the head set.
    pub head: Option<Side>,
}

/// The decisions of a run by (action, nth), with the event that carries each.
fn decisions(events: &[Event]) -> Decisions {
    occurrences(events)
        .into_iter()
        .map(|o| {
            let side = Side {
                effect: format!("{:?}", o.effect()).to_lowercase(),
                policies: o
                    .decision
                    .map(|d| d.deciders().into_iter().map(str::to_owned).collect())
                    .unwrap_or_default(),
            };
            let request = serde_json::to_value(&o.event.body).unwrap_or(Value::Null);
            ((o.action.to_owned(), o.nth), (side, request))
        })
        .collect()
}

/// Replays every scenario of `files` under `base` and under `head` and lists every decision that
/// differs. A scenario that cannot run under one of the sets is an error naming it.
pub fn scenarios(
    files: &[PathBuf],
    base: &Path,
    head: &Path,
) -> Result<Vec<Changed>, ScenarioError> {
    let mut changed = Vec::new();
    for file in files {
        let s = load(file)?;
        let run_under = |root: &Path| -> Result<_, ScenarioError> {
            let d = Arc::new(deployment_at(&s, root)?);
            Ok(decisions(&replay(&s, d)?.events))
        };
        let (before, after) = (run_under(base)?, run_under(head)?);
        pair(&s.path.display().to_string(), &before, &after, &mut changed);
    }
    Ok(changed)
}

type Decisions = BTreeMap<(String, usize), (Side, Value)>;

/// Every (action, nth) whose decision differs between the two runs of `name`.
fn pair(name: &str, before: &Decisions, after: &Decisions, changed: &mut Vec<Changed>) {
    let keys: std::collections::BTreeSet<&(String, usize)> =
        before.keys().chain(after.keys()).collect();
    for key in keys {
        let (b, h) = (before.get(key), after.get(key));
        if b.map(|x| &x.0) == h.map(|x| &x.0) {
            continue;
        }
        let request = b.or(h).map(|x| x.1.clone()).unwrap_or(Value::Null);
        changed.push(Changed {
            scenario: name.to_owned(),
            action: key.0.clone(),
            nth: key.1,
            request,
            base: b.map(|x| x.0.clone()),
            head: h.map(|x| x.0.clone()),
        });
    }
}

/// A recorded session that could not be re-decided under one of the sets, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Unchecked {
    /// `tenant/id`.
    pub session: String,
    /// Why.
    pub error: String,
}

/// Re-decides every session recorded in `store` under `base` and under `head` — its recorded
/// steps replayed on each, the bundle rebuilt from that directory with the packs the recording
/// loaded (the folders of its policy files) plus whatever the recording added inline (a
/// scenario's own entities, tools or policies; tools a gateway registered) — and lists every
/// decision that differs, named by session.
pub fn log(
    store: &dyn runtime::store::SessionStore,
    base: &Path,
    head: &Path,
) -> Result<(Vec<Changed>, Vec<Unchecked>, usize), runtime::store::StoreError> {
    let sessions = store.sessions()?;
    let mut changed = Vec::new();
    let mut unchecked = Vec::new();
    for (tenant, id) in &sessions {
        let name = format!("{tenant}/{id}");
        let decide = |root: &Path| -> Result<Decisions, String> {
            let stored = store.load(tenant, id).map_err(|e| e.to_string())?;
            let sources = store
                .bundle(&stored.record.bundle)
                .map_err(|e| e.to_string())?;
            let deployment = rebuilt(&sources, root)?;
            let events = crate::audit::replay_under(
                Arc::new(deployment),
                &stored.record.config,
                &stored.steps,
            )?;
            Ok(decisions(&events))
        };
        match (decide(base), decide(head)) {
            (Ok(before), Ok(after)) => pair(&name, &before, &after, &mut changed),
            (Err(error), _) | (_, Err(error)) => unchecked.push(Unchecked {
                session: name,
                error,
            }),
        }
    }
    Ok((changed, unchecked, sessions.len()))
}

/// The recorded bundle with its pack files taken from `root` instead.
fn rebuilt(sources: &kernel::BundleSources, root: &Path) -> Result<kernel::Deployment, String> {
    // A source named `file [entities]`, `file [tools]`, `file [policy_text]` came from the
    // recording itself (a scenario's inline parts), not from a pack folder.
    let inline = |s: &kernel::Source| s.name.ends_with(']');
    let mut packs: Vec<String> = sources
        .policies
        .iter()
        .filter(|s| !inline(s))
        .filter_map(|s| {
            Path::new(&s.name)
                .parent()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .filter(|p| p != "base")
        .collect();
    packs.sort();
    packs.dedup();
    let names: Vec<&str> = packs.iter().map(String::as_str).collect();
    let mut builder = kernel::pack::builder_for(root, &names).map_err(|e| e.to_string())?;
    for s in sources.policies.iter().filter(|s| inline(s)) {
        builder = builder.policies(s.clone());
    }
    for s in sources.entities.iter().filter(|s| inline(s)) {
        builder = builder.entities(s.clone());
    }
    for (spec, origin) in &sources.tools {
        builder = builder.tool(spec.clone(), origin.clone());
    }
    builder
        .build()
        .map_err(|e| format!("{}: {e}", root.display()))
}
