//! Performing effects: each tool or model call becomes the future in flight (its backoff, its
//! `@timeout_ms`, its answer as an intent); memory reads and writes go to the store, or to the
//! runtime's shared memory without one.

use std::time::Duration;

use kernel::agent::Answer;
use kernel::{Effect, Intent};
use tokio::time::{sleep_until, timeout};

use super::run::Run;
use crate::models::ModelCall;
use crate::tools::{ToolCall, result_intent};

impl Run<'_> {
    pub(super) fn perform(&mut self, effect: Effect, now: u64) {
        let rt = self.rt;
        match effect {
            Effect::CallTool {
                call_id,
                tool,
                input,
                attempt,
                not_before_ms,
                obligations,
            } => {
                // Only a retry's backoff waits: a timer, even one already due, costs a timer tick.
                let start = (not_before_ms > now).then(|| self.at(not_before_ms));
                let call = ToolCall {
                    call_id: call_id.clone(),
                    attempt,
                    tenant: self.tenant.clone(),
                    session: self.agent.session().config().id.clone(),
                    input,
                    credentials: rt.credentials.for_call(&self.tenant, &tool),
                };
                let implementation = rt.tools.get(&tool).cloned();
                self.in_flight = Some(Box::pin(async move {
                    if let Some(start) = start {
                        sleep_until(start).await;
                    }
                    let Some(implementation) = implementation else {
                        let error = format!("no implementation registered for tool `{tool}`");
                        return Answer::result(failed(call_id, error, false, 0));
                    };
                    let result = match obligations.timeout_ms {
                        Some(ms) => timeout(Duration::from_millis(ms), implementation.call(call))
                            .await
                            .map_err(|_| ms),
                        None => Ok(implementation.call(call).await),
                    };
                    Answer::result(match result {
                        Ok(result) => result_intent(call_id, result),
                        Err(ms) => timed_out(call_id, ms),
                    })
                }));
            }
            Effect::CallModel {
                call_id,
                model,
                attempt,
                not_before_ms,
                obligations,
            } => {
                // Only a retry's backoff waits: a timer, even one already due, costs a timer tick.
                let start = (not_before_ms > now).then(|| self.at(not_before_ms));
                let call = ModelCall {
                    call_id: call_id.clone(),
                    attempt,
                    model,
                    tenant: self.tenant.clone(),
                    transcript: self.agent.transcript().to_vec(),
                };
                self.in_flight = Some(Box::pin(async move {
                    if let Some(start) = start {
                        sleep_until(start).await;
                    }
                    let result = match obligations.timeout_ms {
                        Some(ms) => timeout(Duration::from_millis(ms), rt.model.call(call))
                            .await
                            .map_err(|_| ms),
                        None => Ok(rt.model.call(call).await),
                    };
                    let (intent, plan) = match result {
                        Ok(Ok(reply)) => (
                            Intent::ModelResponded {
                                call_id,
                                input_tokens: reply.input_tokens,
                                output_tokens: reply.output_tokens,
                                cost: reply.cost,
                                output: reply.output,
                            },
                            Some((reply.calls, reply.answer)),
                        ),
                        Ok(Err(e)) => (failed(call_id, e.message, e.retryable, e.cost), None),
                        Err(ms) => (timed_out(call_id, ms), None),
                    };
                    Answer {
                        intent,
                        plan,
                        from_model: true,
                    }
                }));
            }
            Effect::ReadMemory {
                read_id,
                scope,
                key,
            } => {
                let entry = match &rt.tenant_memory {
                    // Durable memory is keyed by the session's tenant. A failed read stops the
                    // run rather than passing for a miss.
                    Some(store) => match store.memory_get(&self.tenant, &scope, &key) {
                        Ok(entry) => entry,
                        Err(e) => {
                            self.store_error = Some(e);
                            return;
                        }
                    },
                    None => rt
                        .memory
                        .lock()
                        .ok()
                        .and_then(|m| m.get(&(self.tenant.clone(), scope, key)).cloned()),
                };
                let (value, labels) = entry.map_or((None, Vec::new()), |(v, l)| (Some(v), l));
                let answer = Answer::result(Intent::MemoryLoaded {
                    read_id,
                    value,
                    labels,
                });
                self.in_flight = Some(Box::pin(std::future::ready(answer)));
            }
            Effect::WriteMemory {
                scope,
                key,
                value,
                labels,
            } => match &rt.tenant_memory {
                Some(store) => {
                    if let Err(e) = store.memory_put(&self.tenant, &scope, &key, &value, &labels) {
                        self.store_error = Some(e);
                    }
                }
                None => {
                    if let Ok(mut m) = rt.memory.lock() {
                        m.insert((self.tenant.clone(), scope, key), (value, labels));
                    }
                }
            },
            Effect::Abort { .. } => self.in_flight = None,
        }
    }
}

fn failed(call_id: String, error: String, retryable: bool, cost: u64) -> Intent {
    Intent::CallFailed {
        call_id,
        error,
        retryable,
        cost,
        jitter_ms: 0,
    }
}

fn timed_out(call_id: String, ms: u64) -> Intent {
    failed(call_id, format!("timed out after {ms} ms"), true, 0)
}
