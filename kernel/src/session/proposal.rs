//! A proposal: an agent action awaiting authorization, in the form every flow shares (first try,
//! retry, re-run after approval).

use cedar_policy::{EntityUid, RestrictedExpression as Rx};
use serde_json::{Value, json};

use super::Session;
use super::context::{long, strings};
use crate::deployment::Deployment;
use crate::gate::{Ask, Decision};
use crate::tools::uid;

#[derive(Debug, Clone)]
pub(crate) enum Proposal {
    Model {
        model: String,
        estimated_tokens: u64,
        estimated_cost: u64,
    },
    Tool {
        tool: String,
        input: Value,
        estimated_cost: u64,
    },
    Read {
        scope: String,
        key: String,
    },
    Write {
        scope: String,
        key: String,
        value: Value,
    },
}

impl Proposal {
    /// What was asked, as recorded in `decision` and `approval_requested` events.
    pub fn describe(&self) -> Value {
        match self {
            Self::Model {
                model,
                estimated_tokens,
                estimated_cost,
            } => {
                json!({"model": model, "estimated_tokens": estimated_tokens, "estimated_cost": estimated_cost})
            }
            Self::Tool {
                tool,
                input,
                estimated_cost,
            } => {
                json!({"tool": tool, "input": input, "estimated_cost": estimated_cost})
            }
            Self::Read { scope, key } => json!({"scope": scope, "key": key}),
            Self::Write { scope, key, value } => {
                json!({"scope": scope, "key": key, "value": value})
            }
        }
    }

    /// What kind of proposal this is, in words.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Model { .. } => "call_model",
            Self::Tool { .. } => "tool",
            Self::Read { .. } => "read_memory",
            Self::Write { .. } => "write_memory",
        }
    }

    /// The tool's name or the model's id, for call events.
    pub fn target(&self) -> &str {
        match self {
            Self::Model { model, .. } => model,
            Self::Tool { tool, .. } => tool,
            Self::Read { scope, .. } | Self::Write { scope, .. } => scope,
        }
    }

    pub fn estimated_cost(&self) -> u64 {
        match self {
            Self::Model { estimated_cost, .. } | Self::Tool { estimated_cost, .. } => {
                *estimated_cost
            }
            Self::Read { .. } | Self::Write { .. } => 0,
        }
    }

    /// The action and resource this proposal is a request for.
    pub fn action_resource(&self, d: &Deployment) -> Result<(EntityUid, EntityUid), String> {
        Ok(match self {
            Self::Model { model, .. } => (d.actions.call_model.clone(), uid("Model", model)?),
            Self::Tool { tool, .. } => {
                let t = d
                    .tool_entry(tool)
                    .ok_or_else(|| format!("no tool named `{tool}`"))?;
                (t.action.clone(), t.uid.clone())
            }
            Self::Read { scope, .. } => (d.actions.read_memory.clone(), uid("MemoryScope", scope)?),
            Self::Write { scope, .. } => {
                (d.actions.write_memory.clone(), uid("MemoryScope", scope)?)
            }
        })
    }
}

impl Session {
    /// Authorizes `proposal` on its `attempt`, with `lifted` policies set aside.
    pub(crate) fn ask(
        &mut self,
        now: u64,
        proposal: &Proposal,
        attempt: u32,
        lifted: &[String],
    ) -> Decision {
        let deployment = std::sync::Arc::clone(&self.deployment);
        let extra = match proposal {
            Proposal::Model {
                estimated_tokens,
                estimated_cost,
                ..
            } => Ok(vec![
                ("estimated_tokens", long(*estimated_tokens)),
                ("estimated_cost", long(*estimated_cost)),
            ]),
            Proposal::Tool { tool, input, .. } => {
                // The arguments passed the tool's JSON Schema when the call was first proposed.
                let entry = deployment.tool_entry(tool);
                match entry.map(|t| (t, t.to_cedar(input))) {
                    Some((t, Ok(rx))) => t
                        .provenance(input, &self.content)
                        .map(|p| vec![("input", rx), ("provenance", p)]),
                    Some((_, Err(error))) => Err(error.to_string()),
                    None => Err(format!("no tool named `{tool}`")),
                }
            }
            Proposal::Read { key, .. } => Ok(vec![("key", Rx::new_string(key.clone()))]),
            Proposal::Write { key, .. } => {
                let labels = strings(self.labels.iter().map(String::as_str));
                Ok(vec![
                    ("key", Rx::new_string(key.clone())),
                    ("labels", labels),
                ])
            }
        };
        let parts = proposal.action_resource(&deployment);
        let (action, resource) = match parts {
            Ok(p) => p,
            Err(e) => return self.refuse(&deployment, e),
        };
        let context = extra.and_then(|extra| self.context(now, attempt, extra));
        let ask = Ask {
            principal: &self.uids.agent,
            action: &action,
            resource: &resource,
            context,
            validate: self.strict,
        };
        deployment
            .gate
            .authorize(ask, lifted, self.config.mode, self.trace.as_mut())
    }

    /// Authorizes reserving `amount` of the session's budget.
    pub(crate) fn ask_spend(&mut self, now: u64, amount: u64, purpose: String) -> Decision {
        let deployment = std::sync::Arc::clone(&self.deployment);
        let extra = vec![
            ("amount", long(amount)),
            ("purpose", Rx::new_string(purpose)),
        ];
        let context = self.context(now, 1, extra);
        let ask = Ask {
            principal: &self.uids.agent,
            action: &deployment.actions.spend_budget,
            resource: &self.uids.budget,
            context,
            validate: self.strict,
        };
        deployment
            .gate
            .authorize(ask, &[], self.config.mode, self.trace.as_mut())
    }

    /// Authorizes a user's action (`approve` or `cancel`) on this session's agent.
    pub(crate) fn ask_as_user(
        &mut self,
        now: u64,
        user: &str,
        action: &EntityUid,
        extra: Vec<(&str, Rx)>,
    ) -> Decision {
        let deployment = std::sync::Arc::clone(&self.deployment);
        let principal = match uid("User", user) {
            Ok(p) => p,
            Err(e) => return self.refuse(&deployment, e),
        };
        let context = self.context(now, 1, extra);
        let ask = Ask {
            principal: &principal,
            action,
            resource: &self.uids.agent,
            context,
            validate: self.strict,
        };
        deployment
            .gate
            .authorize(ask, &[], self.config.mode, self.trace.as_mut())
    }

    /// Authorizes the passage of time.
    pub(crate) fn ask_continue(&mut self, now: u64) -> Decision {
        let deployment = std::sync::Arc::clone(&self.deployment);
        let context = self.context(now, 1, Vec::new());
        let ask = Ask {
            principal: &self.uids.agent,
            action: &deployment.actions.continue_session,
            resource: &self.uids.agent,
            context,
            validate: self.strict,
        };
        deployment
            .gate
            .authorize(ask, &[], self.config.mode, self.trace.as_mut())
    }

    /// A denial for a request that could not even be formed (an unusable entity id).
    fn refuse(&self, deployment: &Deployment, error: String) -> Decision {
        let agent = &self.uids.agent;
        let mut d = Decision::new(
            agent,
            agent,
            agent,
            self.config.mode,
            &deployment.gate.hashes,
        );
        d.errors.push(format!("invalid request: {error}"));
        d.settle(false);
        d
    }
}
