//! The request contract: the shape of every request the kernel builds, checked against the schema
//! once, when a deployment loads. That check needs sessions, so [`DeploymentBuilder::build`] lives
//! here, above both: the deployment compiles its bundle without knowing of sessions, and this
//! layer refuses it if the sessions built on it would make requests the schema does not accept.
//!
//! Sessions build requests from their own typed state, so at run time Cedar is not asked to
//! re-validate them (a validation costs about as much as an authorization). What could still
//! disagree is the schema: a policy author may edit `Session`, `History` or an action's context.
//! This check asks for one request of every kind the kernel makes, through the same code the
//! sessions use, with Cedar's validation on, and refuses the deployment if any is invalid.

use std::sync::Arc;

use cedar_policy::EntityUid;
use serde_json::json;

use super::context::{approve_extra, cancel_extra, endorse_extra};
use super::proposal::Proposal;
use super::{Session, SessionConfig};
use crate::deployment::{Deployment, DeploymentBuilder};
use crate::error::{LoadError, LoadErrors};
use crate::gate::{Decision, Mode};

impl DeploymentBuilder {
    /// Checks and compiles everything, then checks the request contract. On failure, lists every
    /// problem found, each located.
    pub fn build(self) -> Result<Deployment, LoadErrors> {
        let (deployment, schema_at) = self.compile()?;
        let deployment = Arc::new(deployment);
        let broken = check_request_contract(&deployment);
        if !broken.is_empty() {
            return Err(LoadErrors(
                broken
                    .into_iter()
                    .map(|(request, message)| LoadError::Contract {
                        at: schema_at.clone(),
                        request,
                        message,
                    })
                    .collect(),
            ));
        }
        // The check's sessions are gone, so this is the only reference.
        Arc::try_unwrap(deployment).map_err(|_| {
            LoadErrors(vec![LoadError::Schema {
                at: schema_at,
                message: "internal: the deployment is still shared after its contract check".into(),
            }])
        })
    }
}

/// Every request kind the kernel makes that the schema does not accept, as `(what, Cedar's
/// message)`. Empty when the deployment's schema and the kernel agree.
fn check_request_contract(deployment: &Arc<Deployment>) -> Vec<(String, String)> {
    let mut s = match Session::probe(Arc::clone(deployment)) {
        Ok(s) => s,
        Err(e) => return vec![("a session".into(), e)],
    };
    let mut problems = Vec::new();
    let mut note = |what: String, d: Decision| {
        for e in d.errors {
            if let Some(message) = e.strip_prefix("invalid request: ") {
                problems.push((what.clone(), message.to_owned()));
            }
        }
    };
    let proposals = [
        Proposal::Model {
            model: "probe".into(),
            estimated_tokens: 1,
            estimated_cost: 1,
        },
        Proposal::Read {
            scope: "probe".into(),
            key: "probe".into(),
        },
        Proposal::Write {
            scope: "probe".into(),
            key: "probe".into(),
            value: json!("probe"),
        },
    ];
    for p in proposals {
        let what = format!("{} request", p.kind());
        note(what, s.ask(0, &p, 1, &[]));
    }
    let tools: Vec<(String, serde_json::Value)> = deployment
        .tools
        .all()
        .map(|t| (t.spec.name.clone(), t.sample_input()))
        .collect();
    for (tool, input) in tools {
        let p = Proposal::Tool {
            tool: tool.clone(),
            input,
            estimated_cost: 1,
        };
        note(format!("tool `{tool}` request"), s.ask(0, &p, 1, &[]));
    }
    note(
        "spend_budget request".into(),
        s.ask_spend(0, 1, "probe".into()),
    );
    note("continue request".into(), s.ask_continue(0));
    let actions = &deployment.actions;
    let users: [(&str, &EntityUid, Vec<_>); 4] = [
        (
            "start_session",
            &actions.start_session,
            super::context::start_extra(crate::gate::Mode::Enforce),
        ),
        (
            "approve",
            &actions.approve,
            approve_extra(
                true,
                "probe".into(),
                "probe".into(),
                &["probe".into()],
                &["probe".into()],
                false,
            ),
        ),
        ("cancel", &actions.cancel, cancel_extra("probe")),
        ("endorse", &actions.endorse, endorse_extra("probe")),
    ];
    for (name, action, extra) in users {
        note(
            format!("{name} request"),
            s.ask_as_user(0, "probe", action, extra),
        );
    }
    problems
}

impl Session {
    /// A running session that validates every request it makes, with a label and a called tool so
    /// that its sets are not empty. Its entities need not exist: only the request shape matters.
    fn probe(deployment: Arc<Deployment>) -> Result<Self, String> {
        let config = SessionConfig {
            id: "probe".into(),
            tenant: "probe".into(),
            user: "probe".into(),
            agent: "probe".into(),
            budget: "probe".into(),
            mode: Mode::Enforce,
        };
        let uids = super::Uids::of(&config).map_err(|e| e.to_string())?;
        let mut s = Self::assemble(deployment, config, uids, 0);
        s.strict = true;
        s.started_at = Some(0);
        s.labels.insert("probe".into());
        s.history.tools_called.insert("probe".into());
        Ok(s)
    }
}
