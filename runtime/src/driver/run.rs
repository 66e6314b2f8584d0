//! The run: drives one [`AgentLoop`] on tokio — writes each step ahead, publishes its events,
//! performs its effects, and waits for whichever comes first of the result in flight, a
//! scheduled control, a tick or a live control.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use kernel::Step;
use kernel::agent::{AgentLoop, Answer, Control, Estimate, Message, Next, Plan, Planner, Stepped};
use kernel::event::Event;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::{Outcome, Runtime};
use crate::hub::EventHub;
use crate::models::Model;
use crate::store::{SessionLog, StoreError, StoredSession};

/// How a run begins: a new session with the user's request, or a stored one picking up.
pub(super) enum Begin {
    Fresh(String),
    /// Created in the log by a run that stopped before its first step: started, not created.
    Created(String),
    Resume(Box<StoredSession>),
}

/// A result on its way back to the loop.
pub(super) type InFlight<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

pub(super) struct Run<'a> {
    pub(super) rt: &'a Runtime,
    pub(super) agent: Box<AgentLoop>,
    pub(super) t0: Instant,
    pub(super) tenant: String,
    events: Vec<Event>,
    pub(super) in_flight: Option<InFlight<'a>>,
    hub: Option<&'a EventHub>,
    live: Option<mpsc::UnboundedReceiver<Control>>,
    tick_every: Option<Duration>,
    next_tick: Instant,
    pub(super) store_error: Option<StoreError>,
}

/// What the next outside happening is.
enum External {
    Scheduled,
    Tick,
    Live(Option<Control>),
}

/// The runtime's model as the loop's planner.
struct ModelPlanner<'m>(&'m dyn Model);

impl Planner for ModelPlanner<'_> {
    fn next_estimate(&mut self, transcript: &[Message]) -> Option<Estimate> {
        self.0.next_estimate(transcript)
    }

    fn skip(&mut self) {
        self.0.skip();
    }

    fn continues_after_failure(&self) -> bool {
        self.0.continues_after_failure()
    }

    fn plan_from_output(&self, output: &Value) -> Option<Plan> {
        self.0.plan_from_output(output)
    }
}

impl<'a> Run<'a> {
    pub(super) fn new(
        rt: &'a Runtime,
        agent: Box<AgentLoop>,
        begin: &Begin,
        hub: Option<&'a EventHub>,
        live: Option<mpsc::UnboundedReceiver<Control>>,
        tick_every: Option<Duration>,
    ) -> Self {
        let resumed_at = match begin {
            Begin::Resume(stored) => stored.steps.last().map_or(0, |s| s.t_ms),
            Begin::Fresh(_) | Begin::Created(_) => 0,
        };
        let now = Instant::now();
        let t0 = now
            .checked_sub(Duration::from_millis(resumed_at))
            .unwrap_or(now);
        Self {
            rt,
            tenant: agent.session().config().tenant.clone(),
            agent,
            t0,
            events: Vec::new(),
            in_flight: None,
            hub,
            live,
            tick_every,
            next_tick: t0 + tick_every.unwrap_or_default(),
            store_error: None,
        }
    }

    pub(super) fn now(&self) -> u64 {
        u64::try_from((Instant::now() - self.t0).as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Starts the session, or replays its stored steps and picks up where they end.
    pub(super) fn begin(&mut self, begin: Begin) {
        match begin {
            Begin::Fresh(request) | Begin::Created(request) => {
                let now = self.now();
                let stepped = self.agent.start(request, now);
                self.stepped(stepped);
            }
            Begin::Resume(stored) => {
                let StoredSession { steps, events, .. } = *stored;
                let planner = ModelPlanner(self.rt.model.as_ref());
                match self.agent.resume(steps, events, &planner) {
                    Ok(resumed) => {
                        if self.rt.keep_events {
                            self.events = resumed.events;
                        }
                        if let Some(effect) = resumed.reread {
                            let now = self.now();
                            self.perform(effect, now);
                        }
                    }
                    Err(e) => self.store_error = Some(StoreError::Corrupt(e.to_string())),
                }
            }
        }
    }

    pub(super) fn finish(self) -> Outcome {
        Outcome {
            status: self.agent.session().status(),
            events: self.events,
            store_error: self.store_error,
        }
    }

    pub(super) async fn drive(&mut self) {
        let rt = self.rt;
        let mut planner = ModelPlanner(rt.model.as_ref());
        while self.store_error.is_none() {
            let now = self.now();
            let until = match self.agent.next(now, &mut planner) {
                Next::Finished => return,
                Next::Stepped(stepped) => {
                    self.stepped(*stepped);
                    continue;
                }
                Next::Wait { until } => until,
            };
            let awaits_effect = self.agent.awaits_effect();
            let Some(mut fut) = self.in_flight.take().filter(|_| awaits_effect) else {
                if !self.next_control(until).await {
                    return; // nothing more to say, nobody else to hear from
                }
                continue;
            };
            // The result wins a tie with an outside happening due at the same instant.
            let mut answer = if self.expects_external() {
                tokio::select! {
                    biased;
                    answer = &mut fut => answer,
                    external = self.external(until) => {
                        self.in_flight = Some(fut);
                        self.handle_external(external);
                        continue;
                    }
                }
            } else {
                fut.await
            };
            if let kernel::Intent::CallFailed {
                retryable: true,
                jitter_ms,
                ..
            } = &mut answer.intent
            {
                *jitter_ms = self.rt.next_jitter();
            }
            self.agent.deliver(answer);
        }
    }

    /// Waits for the next outside happening and applies it; false when none can come.
    async fn next_control(&mut self, until: Option<u64>) -> bool {
        while self.expects_external() {
            let external = self.external(until).await;
            if self.handle_external(external) {
                return true;
            }
        }
        false
    }

    /// Whether anything can still happen from outside.
    fn expects_external(&self) -> bool {
        self.agent.has_scheduled() || self.tick_every.is_some() || self.live.is_some()
    }

    /// The earliest of: the next scheduled control (due at `until`), the next tick, a live control.
    async fn external(&mut self, until: Option<u64>) -> External {
        let due = until.map(|at| self.at(at));
        let tick = self.tick_every.map(|_| self.next_tick);
        let live = self.live.as_mut();
        tokio::select! {
            biased;
            () = wait(due) => External::Scheduled,
            () = wait(tick) => External::Tick,
            control = recv(live) => External::Live(control),
        }
    }

    /// Applies an outside happening (a scheduled control is left for the loop, now due); false
    /// when it was only the live channel closing.
    fn handle_external(&mut self, external: External) -> bool {
        let control = match external {
            External::Scheduled => return true,
            External::Tick => {
                self.next_tick += self.tick_every.unwrap_or_default();
                Control::Tick
            }
            External::Live(Some(control)) => control,
            External::Live(None) => {
                self.live = None;
                return false;
            }
        };
        let now = self.now();
        let stepped = self.agent.control(control, now);
        self.stepped(stepped);
        true
    }

    /// Writes a step ahead, publishes its events, performs its effects.
    fn stepped(&mut self, stepped: Stepped) {
        let Stepped {
            n,
            t_ms,
            intent,
            result,
            ..
        } = stepped;
        if let (Some(store), Some(intent)) = (&self.rt.log, intent) {
            let step = Step { n, t_ms, intent };
            let events = match &result {
                Ok(t) => t.events.as_slice(),
                Err(r) => std::slice::from_ref(r.event.as_ref()),
            };
            let c = self.agent.session().config();
            if let Err(e) = store_io(store.as_ref(), || {
                store.append(&c.tenant, &c.id, &step, events)
            }) {
                self.store_error = Some(e);
                self.in_flight = None;
                return;
            }
        }
        match result {
            Err(rejected) => self.publish(*rejected.event),
            Ok(transition) => {
                for event in transition.events {
                    self.publish(event);
                }
                for effect in transition.effects {
                    self.perform(effect, t_ms);
                }
            }
        }
    }

    fn publish(&mut self, event: Event) {
        if let Some(hub) = self.hub {
            hub.publish(&event);
        }
        if self.rt.keep_events {
            self.events.push(event);
        }
    }
}

/// Runs store work without stalling the executor. A store that may block on I/O
/// ([`SessionLog::blocks`]) runs it in place of the worker on a multi-threaded runtime: the worker
/// hands its other tasks to another thread while this one waits, so every session waiting on a
/// commit at the same moment can share it (see [`crate::store::GroupCommit`]). An in-memory store,
/// or a current-thread runtime where a hand-off is impossible, runs it directly.
pub(crate) fn store_io<T>(store: &dyn SessionLog, f: impl FnOnce() -> T) -> T {
    if store.blocks() { off_executor(f) } else { f() }
}

/// Runs blocking work without stalling the async executor it is called on, where that executor
/// can lend the thread (a multi-threaded one); elsewhere in place.
pub(crate) fn off_executor<T>(f: impl FnOnce() -> T) -> T {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

async fn wait(until: Option<Instant>) {
    match until {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn recv(rx: Option<&mut mpsc::UnboundedReceiver<Control>>) -> Option<Control> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
