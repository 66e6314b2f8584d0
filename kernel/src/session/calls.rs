//! Agent proposals: authorize, reserve budget, hand effects to the driver, take results back,
//! retry within the obligations.

use serde_json::Value;

use super::proposal::Proposal;
use super::{Effect, PendingApproval, PendingCall, Phase, Session, Status, Transition};
use crate::error::StepError;
use crate::event::EventBody;
use crate::gate::Decision;

/// First retry waits this long; each further retry doubles it (the driver adds jitter).
const RETRY_BASE_MS: u64 = 100;

impl Session {
    /// Rejects calls to unknown tools and arguments that fail the tool's JSON Schema.
    pub(super) fn check_tool(&self, tool: &str, input: &Value) -> Result<(), StepError> {
        if crate::intent::too_deep(input) {
            return Err(StepError::TooDeep {
                what: format!("the arguments of `{tool}`"),
                limit: crate::intent::MAX_JSON_DEPTH,
            });
        }
        #[expect(
            clippy::panic,
            reason = "a deliberate bug (feature `faults`, test-only) that the fuzzer must catch"
        )]
        if crate::faults::active(crate::faults::Fault::PanicOnInput)
            && input.get("amount").and_then(Value::as_i64) == Some(i64::MAX)
        {
            panic!("injected fault: panic on input");
        }
        let entry = self
            .deployment
            .tool_entry(tool)
            .ok_or_else(|| StepError::UnknownTool { tool: tool.into() })?;
        entry
            .check(input)
            .map(|_| ())
            .map_err(|errors| StepError::InvalidArguments {
                tool: tool.into(),
                errors,
            })
    }

    /// Authorizes a proposal from the running state and acts on the decision. `lifted` holds the
    /// policies an approval set aside for exactly this proposal.
    pub(super) fn propose(
        &mut self,
        now: u64,
        proposal: Proposal,
        lifted: Vec<String>,
        mut tr: Transition,
    ) -> Transition {
        self.phase = Phase::Running;
        let d = self.ask(now, &proposal, 1, &lifted);
        let effect_on_deny = crate::faults::active(crate::faults::Fault::EffectOnDeny);
        if !d.proceeds() && !effect_on_deny {
            return self.denied(now, proposal, d, lifted.is_empty(), tr);
        }
        match proposal {
            Proposal::Read { scope, key } => {
                self.count_step(now, "read_memory", false, None);
                let read_id = self.next_id("read");
                let body = EventBody::MemoryRead {
                    read_id: read_id.clone(),
                    scope: scope.clone(),
                    key: key.clone(),
                };
                tr.effects.push(Effect::ReadMemory {
                    read_id: read_id.clone(),
                    scope,
                    key,
                });
                tr.decision = Some(d.clone());
                self.phase = Phase::Memory { read_id };
                self.emit_into(tr, now, body, Some(d))
            }
            Proposal::Write { scope, key, value } => {
                self.count_step(now, "write_memory", false, None);
                let labels: Vec<String> = self.labels.iter().cloned().collect();
                tr.effects.push(Effect::WriteMemory {
                    scope: scope.clone(),
                    key: key.clone(),
                    value: value.clone(),
                    labels: labels.clone(),
                });
                tr.decision = Some(d.clone());
                self.emit_into(
                    tr,
                    now,
                    EventBody::MemoryWritten {
                        scope,
                        key,
                        value,
                        labels,
                    },
                    Some(d),
                )
            }
            call => {
                let call_id = self.next_id("call");
                self.dispatch(now, call_id, call, 1, d, lifted, tr)
            }
        }
    }

    /// A denial: stop for a limit, wait for an approval that could lift it, or record it.
    fn denied(
        &mut self,
        now: u64,
        proposal: Proposal,
        d: Decision,
        may_wait: bool,
        mut tr: Transition,
    ) -> Transition {
        tr.decision = Some(d.clone());
        if let Some(limit) = d.limit() {
            let body = EventBody::LimitReached {
                limit: limit.to_owned(),
                policies: policy_ids(&d),
            };
            return self.end(now, Status::LimitReached, body, Some(d), tr);
        }
        if may_wait && let Some(policies) = d.approval_policies() {
            // Only worth asking a user if lifting those policies would allow the request.
            if self.ask(now, &proposal, 1, &policies).allowed() {
                let request_id = self.next_id("approval");
                let expires_at = d
                    .min_annotation("approval_timeout_ms")
                    .map(|t| now.saturating_add(t));
                let (action, resource) = (d.action.clone(), d.resource.clone());
                let mut roles: Vec<String> = d
                    .policies
                    .iter()
                    .filter(|p| policies.contains(&p.id))
                    .filter_map(|p| p.annotations.get("approval").cloned())
                    .collect();
                roles.sort();
                roles.dedup();
                let self_approval =
                    d.policies
                        .iter()
                        .filter(|p| policies.contains(&p.id))
                        .all(|p| {
                            p.annotations.get("self_approval").map(String::as_str)
                                == Some("allowed")
                        });
                let body = EventBody::ApprovalRequested {
                    request_id: request_id.clone(),
                    action,
                    resource,
                    request: self.described(&proposal),
                    policies: policies.clone(),
                    expires_at_ms: expires_at,
                };
                self.phase = Phase::Approval(PendingApproval {
                    request_id,
                    proposal,
                    policies,
                    roles,
                    self_approval,
                    expires_at,
                });
                return self.emit_into(tr, now, body, Some(d));
            }
        }
        self.emit_into(
            tr,
            now,
            EventBody::Decision {
                request: self.described(&proposal),
            },
            Some(d),
        )
    }

    /// `proposal` as its events record it; a tool call's with its evidence: for each argument, the
    /// sources its value was found in (`request`, `call-N`, `read-N`, `endorsement`).
    fn described(&self, proposal: &Proposal) -> serde_json::Value {
        let mut request = proposal.describe();
        if let Proposal::Tool { input, .. } = proposal
            && let Some(map) = request.as_object_mut()
        {
            let evidence = crate::provenance::evidence(input, &self.content);
            map.insert(
                "evidence".into(),
                serde_json::to_value(evidence).unwrap_or_default(),
            );
        }
        request
    }

    /// An allowed model or tool call: reserve its estimate, then hand it to the driver.
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        now: u64,
        call_id: String,
        proposal: Proposal,
        attempt: u32,
        d: Decision,
        lifted: Vec<String>,
        mut tr: Transition,
    ) -> Transition {
        let amount = proposal.estimated_cost();
        let purpose = match &proposal {
            Proposal::Model { model, .. } => format!("model:{model}"),
            other => format!("tool:{}", other.target()),
        };
        let spend = self.ask_spend(now, amount, purpose);
        if !spend.proceeds() && !crate::faults::active(crate::faults::Fault::EffectOnDeny) {
            // The call itself was allowed: its decision (policies, obligations) is recorded
            // before the reservation's denial, which is what stops it.
            tr = self.emit_into(
                tr,
                now,
                EventBody::Decision {
                    request: proposal.describe(),
                },
                Some(d),
            );
            let request = serde_json::json!({"call_id": call_id, "amount": amount, "for": proposal.describe()});
            tr.decision = Some(spend.clone());
            if let Some(limit) = spend.limit() {
                let body = EventBody::LimitReached {
                    limit: limit.to_owned(),
                    policies: policy_ids(&spend),
                };
                tr = self.emit_into(
                    tr,
                    now,
                    EventBody::Decision { request },
                    Some(spend.clone()),
                );
                return self.end(now, Status::LimitReached, body, None, tr);
            }
            return self.emit_into(tr, now, EventBody::Decision { request }, Some(spend));
        }
        self.counts.cost_reserved = self.counts.cost_reserved.saturating_add(amount);
        tr = self.emit_into(
            tr,
            now,
            EventBody::BudgetReserved {
                call_id: call_id.clone(),
                amount,
            },
            Some(spend),
        );
        let obligations = d.obligations();
        let jitter = std::mem::take(&mut self.retry_jitter_ms);
        let not_before_ms = if attempt > 1 {
            now.saturating_add(RETRY_BASE_MS.saturating_mul(1 << (attempt - 2).min(20)))
                .saturating_add(jitter)
        } else {
            now
        };
        let (effect, first) = match &proposal {
            Proposal::Model {
                model,
                estimated_tokens,
                ..
            } => (
                Effect::CallModel {
                    call_id: call_id.clone(),
                    model: model.clone(),
                    attempt,
                    not_before_ms,
                    obligations: obligations.clone(),
                },
                EventBody::ModelCalled {
                    call_id: call_id.clone(),
                    model: model.clone(),
                    attempt,
                    estimated_tokens: *estimated_tokens,
                    obligations: obligations.clone(),
                },
            ),
            Proposal::Tool { tool, input, .. } => (
                Effect::CallTool {
                    call_id: call_id.clone(),
                    tool: tool.clone(),
                    input: input.clone(),
                    attempt,
                    not_before_ms,
                    obligations: obligations.clone(),
                },
                EventBody::ToolCalled {
                    call_id: call_id.clone(),
                    tool: tool.clone(),
                    attempt,
                    input: input.clone(),
                    obligations: obligations.clone(),
                    evidence: crate::provenance::evidence(input, &self.content),
                },
            ),
            // `propose` handles memory proposals itself; they never reach the call path.
            Proposal::Read { .. } | Proposal::Write { .. } => return tr,
        };
        let body = if attempt > 1 {
            EventBody::RetryScheduled {
                call_id: call_id.clone(),
                target: proposal.target().into(),
                attempt,
                not_before_ms,
            }
        } else {
            match &proposal {
                Proposal::Model { .. } => {
                    self.counts.model_calls += 1;
                    self.count_step(now, "call_model", false, None);
                }
                Proposal::Tool { tool, input, .. } => {
                    self.counts.tool_calls += 1;
                    self.count_step(now, tool, true, Some(input));
                }
                Proposal::Read { .. } | Proposal::Write { .. } => {}
            }
            first
        };
        tr.effects.push(effect);
        tr.decision = Some(d.clone());
        self.phase = Phase::Call(PendingCall {
            call_id,
            proposal,
            attempt,
            reserved: amount,
            obligations,
            lifted,
        });
        self.emit_into(tr, now, body, Some(d))
    }

    /// Counts an allowed agent action: steps and history.
    fn count_step(&mut self, now: u64, action: &str, is_tool: bool, input: Option<&Value>) {
        if !crate::faults::active(crate::faults::Fault::SkipStepCount) {
            self.counts.steps += 1;
        }
        let deployment = std::sync::Arc::clone(&self.deployment);
        self.history
            .record(&deployment.counters, action, is_tool, input, now);
    }

    /// Releases a call's reservation and books what it actually cost.
    pub(super) fn settle(
        &mut self,
        now: u64,
        call: &PendingCall,
        actual: u64,
        tr: Transition,
    ) -> Transition {
        self.counts.cost_reserved = self.counts.cost_reserved.saturating_sub(call.reserved);
        if !crate::faults::active(crate::faults::Fault::IgnoreSpend) {
            self.counts.cost_spent = self.counts.cost_spent.saturating_add(actual);
        }
        let body = EventBody::BudgetSettled {
            call_id: call.call_id.clone(),
            reserved: call.reserved,
            actual,
            violation: actual > call.reserved,
        };
        self.emit_into(tr, now, body, None)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn model_responded(
        &mut self,
        now: u64,
        call: PendingCall,
        input_tokens: u64,
        output_tokens: u64,
        cost: u64,
        output: Value,
        tr: Transition,
    ) -> Transition {
        self.phase = Phase::Running;
        self.counts.tokens = self
            .counts
            .tokens
            .saturating_add(input_tokens)
            .saturating_add(output_tokens);
        let tr = self.settle(now, &call, cost, tr);
        let body = EventBody::ModelResponded {
            call_id: call.call_id,
            input_tokens,
            output_tokens,
            cost,
            output,
        };
        self.emit_into(tr, now, body, None)
    }

    pub(super) fn tool_returned(
        &mut self,
        now: u64,
        call: PendingCall,
        output: Value,
        cost: u64,
        tr: Transition,
    ) -> Transition {
        self.phase = Phase::Running;
        let tr = self.settle(now, &call, cost, tr);
        let tool = call.proposal.target().to_owned();
        let (output_labels, rules) = self
            .deployment
            .tool(&tool)
            .map(|t| {
                let rules: Vec<_> = t
                    .field_labels
                    .iter()
                    .filter_map(|r| Some((r.segments()?, r.labels.clone())))
                    .collect();
                (t.output_labels.clone(), rules)
            })
            .unwrap_or_default();
        if crate::faults::active(crate::faults::Fault::ForgetLabels) {
            self.labels.clear();
        }
        self.content.source(&call.call_id);
        let applied = if rules.is_empty() {
            // The whole output under the tool's labels, whether or not it holds a field.
            let class = crate::provenance::class_of(&output_labels);
            crate::provenance::add_value(&mut self.content, &output, class, &output_labels);
            output_labels
        } else {
            crate::provenance::add_output(&mut self.content, &output, &rules, &output_labels)
        };
        let labels_added = self.add_labels(applied);
        let body = EventBody::ToolReturned {
            call_id: call.call_id,
            tool,
            output,
            labels_added,
        };
        self.emit_into(tr, now, body, None)
    }

    pub(super) fn memory_loaded(
        &mut self,
        now: u64,
        read_id: String,
        value: Option<Value>,
        labels: Vec<String>,
        tr: Transition,
    ) -> Transition {
        self.phase = Phase::Running;
        if let Some(v) = &value {
            self.content.source(&read_id);
            let stored: std::collections::BTreeSet<String> = labels.iter().cloned().collect();
            let class = crate::provenance::class_of(&stored);
            crate::provenance::add_value(&mut self.content, v, class, &stored);
        }
        let labels_added = self.add_labels(labels);
        let body = EventBody::MemoryLoaded {
            read_id,
            found: value.is_some(),
            value,
            labels_added,
        };
        self.emit_into(tr, now, body, None)
    }

    /// Adds labels; returns the ones that are new, sorted.
    fn add_labels(&mut self, labels: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut added: Vec<String> = labels
            .into_iter()
            .filter(|l| self.labels.insert(l.clone()))
            .collect();
        added.sort();
        added
    }

    /// After a restart, a dispatched call with no recorded result may or may not have run. Its
    /// reservation is charged in full, the doubt is recorded, and running it again is a new
    /// authorization with `context.session.in_doubt` (base: only idempotent tools re-run without a
    /// user's approval). Allowed, it is re-dispatched under the same call id (the tool's
    /// idempotency key); refused, the call is abandoned and the agent goes on.
    pub(super) fn in_doubt(&mut self, now: u64, call: PendingCall, tr: Transition) -> Transition {
        self.phase = Phase::Running;
        let mut tr = self.settle(now, &call, call.reserved, tr);
        let body = EventBody::CallInDoubt {
            call_id: call.call_id.clone(),
            target: call.proposal.target().into(),
            attempt: call.attempt,
        };
        tr = self.emit_into(tr, now, body, None);
        self.in_doubt = true;
        let next = call.attempt + 1;
        let d = self.ask(now, &call.proposal, next, &call.lifted);
        let tr = if d.proceeds() {
            self.dispatch(now, call.call_id, call.proposal, next, d, call.lifted, tr)
        } else {
            self.denied(now, call.proposal, d, true, tr)
        };
        self.in_doubt = false;
        tr
    }

    /// A failed attempt: settle it, then retry when the failure is retryable, the obligations
    /// leave room, and the retry (`attempt` + 1 in the context) is itself authorized.
    pub(super) fn call_failed(
        &mut self,
        now: u64,
        call: PendingCall,
        error: String,
        retryable: bool,
        cost: u64,
        tr: Transition,
    ) -> Transition {
        self.phase = Phase::Running;
        let mut tr = self.settle(now, &call, cost, tr);
        let max_retries = call.obligations.max_retries.unwrap_or(0);
        let retries_left = call.attempt <= max_retries;
        let next = call.attempt + 1;
        let retry =
            (retryable && retries_left).then(|| self.ask(now, &call.proposal, next, &call.lifted));
        let will_retry = retry.as_ref().is_some_and(Decision::proceeds);
        let body = EventBody::CallFailed {
            call_id: call.call_id.clone(),
            target: call.proposal.target().into(),
            attempt: call.attempt,
            error,
            retryable,
            will_retry,
        };
        tr = self.emit_into(tr, now, body, None);
        match retry {
            Some(d) if will_retry => {
                self.dispatch(now, call.call_id, call.proposal, next, d, call.lifted, tr)
            }
            Some(d) => self.denied(now, call.proposal, d, false, tr),
            None => tr,
        }
    }
}

fn policy_ids(d: &Decision) -> Vec<String> {
    d.policies.iter().map(|p| p.id.clone()).collect()
}
