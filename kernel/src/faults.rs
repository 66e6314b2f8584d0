//! Deliberate faults for testing the fuzzer's invariants (feature `faults`). Each one breaks the
//! kernel the way a real bug would; a test switches one on and expects the matching invariant to
//! report it. Without the feature, the checks are a constant `false` and compile away.

/// A kernel bug to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A denied call still produces its effect.
    EffectOnDeny,
    /// Evaluation errors no longer deny (Cedar's own fail-open behaviour).
    FailOpen,
    /// A tool result replaces the session's labels instead of adding to them.
    ForgetLabels,
    /// Allowed actions are not counted as steps.
    SkipStepCount,
    /// A session that ended still accepts tool calls.
    EffectAfterEnd,
    /// The fourth event links to the wrong predecessor.
    BrokenChain,
    /// Each session start records a process-wide counter, so replays differ.
    Nondeterministic,
    /// A tool input whose `amount` is `i64::MAX` panics.
    PanicOnInput,
    /// Settled costs are not added to the spend.
    IgnoreSpend,
    /// The context gives `session.attempt` as a string, which the schema does not accept.
    IllTypedContext,
    /// The policy index forgets the policies filed under a principal's entities.
    ForgetScopedPolicies,
    /// A context built for an action's policies leaves out `session.labels` even when one reads it.
    OverPrunedContext,
    /// The policy index forgets the unconditional policies it answers without Cedar.
    ForgetAlwaysPolicies,
    /// The policy index forgets the policies it files by the literal their condition compares.
    ForgetKeyedPolicies,
    /// The kernel's own evaluator reads `a && b` as `a`.
    CompiledAndSkipsRight,
    /// A clock tick asks `continue_session` about the session's user instead of its agent.
    ForeignTickResource,
    /// The third event has no canonical JSON (as if its body could not be serialized).
    UnhashableEvent,
}

#[cfg(feature = "faults")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Fault>> = const { std::cell::Cell::new(None) };
}

/// Switches `fault` on (or every fault off) for the current thread.
#[cfg(feature = "faults")]
pub fn inject(fault: Option<Fault>) {
    ACTIVE.with(|a| a.set(fault));
}

/// Whether `fault` is on for the current thread.
#[cfg(feature = "faults")]
pub(crate) fn active(fault: Fault) -> bool {
    ACTIVE.with(|a| a.get() == Some(fault))
}

#[cfg(not(feature = "faults"))]
#[inline(always)]
pub(crate) fn active(_: Fault) -> bool {
    false
}
