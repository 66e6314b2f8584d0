//! Start, approvals, the clock, cancellation and the end states.

use super::context::{approve_extra, cancel_extra, endorse_extra, start_extra};
use super::{Effect, PendingApproval, Phase, Session, Status, Transition};
use crate::event::EventBody;
use crate::gate::Decision;

impl Session {
    pub(super) fn start(&mut self, now: u64, request: String, tr: Transition) -> Transition {
        self.started_at = Some(now);
        self.phase = Phase::Running;
        let request = if crate::faults::active(crate::faults::Fault::Nondeterministic) {
            static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            format!(
                "{request} #{}",
                STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
        } else {
            request
        };
        self.content.source("request");
        self.content.add(
            &request,
            crate::provenance::USER,
            &std::collections::BTreeSet::new(),
        );
        // Who may start a session, of which agent, in which mode, is policy's: a refusal holds in
        // every mode (a `log_only` session that policy refuses does not run "anyway").
        let action = std::sync::Arc::clone(&self.deployment)
            .actions
            .start_session
            .clone();
        let user = self.config.user.clone();
        let d = self.ask_as_user(now, &user, &action, start_extra(self.config.mode));
        let c = &self.config;
        if !d.allowed() {
            let request = serde_json::json!({
                "start_session": {"agent": c.agent, "user": c.user, "mode": c.mode.as_str()}
            });
            let mut tr = tr;
            tr.decision = Some(d.clone());
            let by = |ids: Vec<&str>| ids.join(", ");
            let error = match d.basis {
                crate::gate::Basis::Error => format!(
                    "the session may not start: its authorization failed ({})",
                    by(d.erred.iter().map(String::as_str).collect())
                ),
                crate::gate::Basis::Forbidden => format!(
                    "the session may not start: forbidden by {}",
                    by(d.policies.iter().map(|p| p.id.as_str()).collect())
                ),
                _ => "the session may not start: no policy permits it".to_owned(),
            };
            tr = self.emit_into(tr, now, EventBody::Decision { request }, Some(d));
            return self.end(now, Status::Failed, EventBody::Failed { error }, None, tr);
        }
        let body = EventBody::SessionStarted {
            agent: c.agent.clone(),
            user: c.user.clone(),
            budget: c.budget.clone(),
            mode: c.mode,
            request,
            bundle: self.deployment.hashes().clone(),
        };
        self.emit_into(tr, now, body, Some(d))
    }

    /// A user's verdict on a waiting request, itself authorized as `approve`. An approval lifts
    /// exactly the waiting request's `@approval` policies, for that request alone, and re-asks.
    pub(super) fn verdict(
        &mut self,
        now: u64,
        pending: PendingApproval,
        user: String,
        granted: bool,
        reason: String,
        mut tr: Transition,
    ) -> Transition {
        let action = std::sync::Arc::clone(&self.deployment)
            .actions
            .approve
            .clone();
        let (request_action, request_resource) = pending
            .proposal
            .action_resource(&self.deployment)
            .map(|(a, r)| (a.to_string(), r.to_string()))
            .unwrap_or_default();
        let extra = approve_extra(
            granted,
            request_action,
            request_resource,
            &pending.policies,
            &pending.roles,
            pending.self_approval,
        );
        let d = self.ask_as_user(now, &user, &action, extra);
        if !d.allowed() {
            // An unauthorized verdict changes nothing, even in log_only mode: the request waits on.
            let request = serde_json::json!({"request_id": pending.request_id, "granted": granted, "user": user});
            tr.decision = Some(d.clone());
            self.phase = Phase::Approval(pending);
            return self.emit_into(tr, now, EventBody::Decision { request }, Some(d));
        }
        self.phase = Phase::Running;
        if granted {
            let body = EventBody::ApprovalGranted {
                request_id: pending.request_id,
                user,
                lifted: pending.policies.clone(),
            };
            tr = self.emit_into(tr, now, body, Some(d));
            self.propose(now, pending.proposal, pending.policies, tr)
        } else {
            tr.decision = Some(d.clone());
            let body = EventBody::ApprovalRejected {
                request_id: pending.request_id,
                user,
                reason,
            };
            self.emit_into(tr, now, body, Some(d))
        }
    }

    /// Time passed: `continue_session` decides whether the session may go on. A denial stops it,
    /// even mid-call; an allowed tick also expires an approval nobody answered in time.
    pub(super) fn tick(&mut self, now: u64, mut tr: Transition) -> Transition {
        let d = self.ask_continue(now);
        tr.decision = Some(d.clone());
        if !d.proceeds() {
            let limit = d.limit().unwrap_or("continue_session").to_owned();
            let policies = d.policies.iter().map(|p| p.id.clone()).collect();
            return self.end(
                now,
                Status::LimitReached,
                EventBody::LimitReached { limit, policies },
                Some(d),
                tr,
            );
        }
        let elapsed_ms = self.started_at.map_or(0, |s| now.saturating_sub(s));
        tr = self.emit_into(tr, now, EventBody::ClockTicked { elapsed_ms }, Some(d));
        if let Phase::Approval(p) = &self.phase
            && p.expires_at.is_some_and(|t| now >= t)
        {
            let request_id = p.request_id.clone();
            self.phase = Phase::Running;
            tr = self.emit_into(tr, now, EventBody::ApprovalExpired { request_id }, None);
        }
        tr
    }

    /// A user withdraws the session, if policy lets that user.
    pub(super) fn cancel(
        &mut self,
        now: u64,
        user: String,
        reason: String,
        mut tr: Transition,
    ) -> Transition {
        let action = std::sync::Arc::clone(&self.deployment)
            .actions
            .cancel
            .clone();
        let d = self.ask_as_user(now, &user, &action, cancel_extra(&reason));
        tr.decision = Some(d.clone());
        if !d.allowed() {
            let request = serde_json::json!({"user": user, "reason": reason});
            return self.emit_into(tr, now, EventBody::Decision { request }, Some(d));
        }
        self.end(
            now,
            Status::Cancelled,
            EventBody::Cancelled { by: user, reason },
            Some(d),
            tr,
        )
    }

    /// A user vouches for a value ("yes, pay this IBAN"), authorized as `endorse`; once allowed,
    /// the value counts as coming from the user in every later provenance check.
    pub(super) fn endorse(
        &mut self,
        now: u64,
        user: String,
        value: String,
        mut tr: Transition,
    ) -> Transition {
        let action = std::sync::Arc::clone(&self.deployment)
            .actions
            .endorse
            .clone();
        let d = self.ask_as_user(now, &user, &action, endorse_extra(&value));
        tr.decision = Some(d.clone());
        if !d.allowed() {
            let request = serde_json::json!({"user": user, "endorse": value});
            return self.emit_into(tr, now, EventBody::Decision { request }, Some(d));
        }
        let labels = std::collections::BTreeSet::from(["endorsed".to_owned()]);
        self.content.source("endorsement");
        self.content.add(&value, crate::provenance::USER, &labels);
        self.emit_into(tr, now, EventBody::ValueEndorsed { user, value }, Some(d))
    }

    /// Ends the session: aborts whatever is in flight, charges an aborted call its whole
    /// reservation (it may have run), and appends the final event.
    pub(super) fn end(
        &mut self,
        now: u64,
        status: Status,
        body: EventBody,
        decision: Option<Decision>,
        mut tr: Transition,
    ) -> Transition {
        match std::mem::replace(&mut self.phase, Phase::Ended(status)) {
            Phase::Call(call) => {
                tr.effects.push(Effect::Abort {
                    call_id: call.call_id.clone(),
                });
                tr = self.settle(now, &call, call.reserved, tr);
            }
            Phase::Memory { read_id } => tr.effects.push(Effect::Abort { call_id: read_id }),
            _ => {}
        }
        self.emit_into(tr, now, body, decision)
    }
}
