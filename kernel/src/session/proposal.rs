//! A proposal: an agent action awaiting authorization, in the form every flow shares (first try,
//! retry, re-run after approval).

use cedar_policy::EntityUid;
use serde_json::{Value, json};

use super::Session;
use super::context::{long, strings};
use crate::deployment::Deployment;
use crate::gate::{Ask, Decision, Val};
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
        let (action, resource) = match proposal.action_resource(&deployment) {
            Ok(p) => p,
            Err(e) => return self.refuse(e),
        };
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
                // Provenance is only worked out when a policy can read it (or a trace needs it).
                let wanted = self.trace.is_some()
                    || self.strict
                    || deployment
                        .gate
                        .demand(&action)
                        .is_none_or(|d| d.wants("provenance"));
                let entry = deployment.tool_entry(tool);
                let built = match entry.map(|t| (t, t.to_value(input))) {
                    Some((t, Ok(rx))) if wanted => t
                        .provenance(input, &self.content)
                        .map(|p| vec![("input", rx), ("provenance", p)]),
                    Some((_, Ok(rx))) => Ok(vec![("input", rx)]),
                    Some((_, Err(error))) => Err(error.to_string()),
                    None => Err(format!("no tool named `{tool}`")),
                };
                match (built, entry.and_then(|t| t.path_facts(input))) {
                    (Ok(mut extra), Some(Ok(paths))) => {
                        extra.push(("paths", paths));
                        Ok(extra)
                    }
                    (Ok(_), Some(Err(e))) | (Err(e), _) => Err(e),
                    (Ok(extra), None) => Ok(extra),
                }
            }
            Proposal::Read { key, .. } => Ok(vec![("key", Val::String(key.clone()))]),
            Proposal::Write { key, .. } => {
                let labels = strings(self.labels.iter().map(String::as_str));
                Ok(vec![("key", Val::String(key.clone())), ("labels", labels)])
            }
        };
        let agent = std::sync::Arc::clone(&self.uids.agent);
        let request = (&*agent, &action, &resource);
        self.decide(now, attempt, request, extra, lifted)
    }

    /// Authorizes reserving `amount` of the session's budget.
    pub(crate) fn ask_spend(&mut self, now: u64, amount: u64, purpose: String) -> Decision {
        let deployment = std::sync::Arc::clone(&self.deployment);
        let extra = vec![("amount", long(amount)), ("purpose", Val::String(purpose))];
        let (agent, budget) = (
            std::sync::Arc::clone(&self.uids.agent),
            self.uids.budget.clone(),
        );
        let request = (&*agent, &deployment.actions.spend_budget, &budget);
        self.decide(now, 1, request, Ok(extra), &[])
    }

    /// Authorizes a user's action (`approve` or `cancel`) on this session's agent.
    pub(crate) fn ask_as_user(
        &mut self,
        now: u64,
        user: &str,
        action: &EntityUid,
        extra: Vec<(&str, Val)>,
    ) -> Decision {
        let principal = match uid("User", user) {
            Ok(p) => p,
            Err(e) => return self.refuse(e),
        };
        let agent = std::sync::Arc::clone(&self.uids.agent);
        self.decide(now, 1, (&principal, action, &*agent), Ok(extra), &[])
    }

    /// Authorizes the passage of time.
    pub(crate) fn ask_continue(&mut self, now: u64) -> Decision {
        let deployment = std::sync::Arc::clone(&self.deployment);
        let agent = std::sync::Arc::clone(&self.uids.agent);
        let resource = if crate::faults::active(crate::faults::Fault::ForeignTickResource) {
            std::sync::Arc::clone(&self.uids.user)
        } else {
            std::sync::Arc::clone(&agent)
        };
        let request = (&*agent, &deployment.actions.continue_session, &*resource);
        self.decide(now, 1, request, Ok(Vec::new()), &[])
    }

    /// Asks the gate about `(principal, action, resource)` with the session's context plus `extra`,
    /// built with only the attributes the action's policies read. A request checked against the
    /// schema gets the full context; so does the copy kept for a trace, which lets the fuzzer's
    /// oracle check the omission against the whole policy set.
    fn decide(
        &mut self,
        now: u64,
        attempt: u32,
        (principal, action, resource): (&EntityUid, &EntityUid, &EntityUid),
        extra: Result<Vec<(&str, Val)>, String>,
        lifted: &[String],
    ) -> Decision {
        let deployment = std::sync::Arc::clone(&self.deployment);
        let demand = if self.strict {
            None
        } else {
            deployment.gate.demand(action)
        };
        let full = match (&self.trace, demand, &extra) {
            (Some(_), Some(_), Ok(extra)) => self.context(now, attempt, extra.clone(), None).ok(),
            _ => None,
        };
        let context = extra.and_then(|extra| self.context(now, attempt, extra, demand));
        let ask = Ask {
            principal,
            action,
            resource,
            context,
            full,
            validate: self.strict,
        };
        deployment
            .gate
            .authorize(ask, lifted, self.config.mode, self.trace.as_mut())
    }

    /// A denial for a request that could not even be formed (an unusable entity id).
    fn refuse(&self, error: String) -> Decision {
        let agent = &self.uids.agent;
        let mut d = Decision::new(agent, agent, agent, self.config.mode);
        d.errors.push(format!("invalid request: {error}"));
        d.settle(false);
        d
    }
}
