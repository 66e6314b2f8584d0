//! Fixtures shared by the criterion benchmarks in `benches/benches/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::Arc;

use kernel::{Deployment, Intent, Mode, Session, SessionConfig, pack::load_packs};

/// The shipped `policies/` directory.
pub fn policies_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// The base + demo deployment.
pub fn demo() -> Arc<Deployment> {
    match load_packs(&policies_root(), &["demo"]) {
        Ok(d) => Arc::new(d),
        Err(e) => panic!("shipped packs must load: {e}"),
    }
}

/// A started acme session in enforce mode.
pub fn started(deployment: &Arc<Deployment>) -> Session {
    started_in(deployment, "acme")
}

/// Session `id` of tenant `t`, its user `alice@t` and agent `assistant@t`, in enforce mode.
fn session_in(deployment: &Arc<Deployment>, t: &str, id: String) -> Session {
    let config = SessionConfig {
        id,
        tenant: t.into(),
        user: format!("alice@{t}"),
        agent: format!("assistant@{t}"),
        budget: t.into(),
        mode: Mode::Enforce,
    };
    match Session::new(Arc::clone(deployment), config) {
        Ok(s) => s,
        Err(e) => panic!("bench session: {e}"),
    }
}

/// Ten policies of tenant `t` over the demo tools, each scoped to the tenant (`principal in`), so
/// the gate files them under it. Thresholds vary with `i` so no two tenants share a text.
pub fn tenant_policies(t: &str, i: usize) -> String {
    let n = 1000 + i % 9000;
    [
        format!("forbid (principal in Tenant::\"{t}\", action == Action::\"refund\", resource)\nwhen {{ context.input.amount > {n}00 }};"),
        format!("@approval(\"approver\")\nforbid (principal in Tenant::\"{t}\", action == Action::\"refund\", resource)\nwhen {{ context.input.amount > {n}0 && context.session.labels.contains(\"untrusted\") }};"),
        format!("forbid (principal in Tenant::\"{t}\", action == Action::\"send_email\", resource)\nwhen {{ context.input.to like \"*@rival{i}.example\" }};"),
        format!("forbid (principal in Tenant::\"{t}\", action == Action::\"wire_transfer\", resource)\nwhen {{ context.input.amount.greaterThan(decimal(\"{n}.0\")) }};"),
        format!("forbid (principal in Tenant::\"{t}\", action == Action::\"web_search\", resource)\nwhen {{ context.input.query like \"*secret-{i}*\" }};"),
        format!("forbid (principal in Tenant::\"{t}\", action == Action::\"read_crm\", resource)\nwhen {{ context.input.customer_id == \"vip-{i}\" }};"),
        format!("forbid (principal in Tenant::\"{t}\", action == Action::\"delete_records\", resource)\nwhen {{ context.input.customer_ids.contains(\"c-{i}\") }};"),
        format!("forbid (principal in Tenant::\"{t}\", action == Action::\"call_model\", resource)\nwhen {{ context.estimated_tokens > {n}0 }};"),
        format!("forbid (principal in Tenant::\"{t}\", action == Action::\"spend_budget\", resource)\nwhen {{ context.amount > {n}000 }};"),
        format!("forbid (principal in Tenant::\"{t}\", action == Action::\"write_memory\", resource)\nwhen {{ context.key like \"private-{i}/*\" }};"),
    ]
    .iter()
    .enumerate()
    .map(|(k, p)| format!("@id(\"{t}.{k}\")\n{p}\n"))
    .collect()
}

/// Entities of `tenants` generated tenants `t0..`: each with an agent, a user and a budget.
pub fn tenant_entities(tenants: usize) -> String {
    let mut out = Vec::with_capacity(tenants * 4);
    for i in 0..tenants {
        let t = format!("t{i}");
        let parent = serde_json::json!([{"type": "Tenant", "id": t}]);
        out.push(
            serde_json::json!({"uid": {"type": "Tenant", "id": t}, "attrs": {}, "parents": []}),
        );
        out.push(serde_json::json!({"uid": {"type": "Agent", "id": format!("assistant@{t}")}, "attrs": {}, "parents": parent}));
        out.push(serde_json::json!({"uid": {"type": "User", "id": format!("alice@{t}")}, "attrs": {"roles": []}, "parents": parent}));
        out.push(serde_json::json!({"uid": {"type": "Budget", "id": t}, "attrs": {"limit": 2_000_000}, "parents": parent}));
    }
    serde_json::Value::Array(out).to_string()
}

/// Base + demo plus `tenants` generated tenants with ten policies each.
pub fn tenants(tenants: usize) -> Arc<Deployment> {
    let policies: String = (0..tenants)
        .map(|i| tenant_policies(&format!("t{i}"), i))
        .collect();
    extended(policies, tenant_entities(tenants))
}

/// How the extra policies of [`on_one_action`] are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pile {
    /// Unscoped, each comparing the order id with its own literal first (the gate files these by
    /// literal).
    Keyed,
    /// Unscoped, each starting with a range test (`amount > n`, n above the call's amount): the
    /// gate files these by threshold and asks only those that hold.
    Ordered,
    /// Each for one other agent (`principal == Agent::"bot-i"`).
    PerAgent,
}

impl Pile {
    pub fn label(self) -> &'static str {
        match self {
            Self::Keyed => "unscoped",
            Self::Ordered => "unscoped_range",
            Self::PerAgent => "per_agent",
        }
    }
}

/// Base + demo plus `extra` policies on `refund`, none of which is satisfied by the benchmark's
/// call, written as `pile` says (a deployment that piles rules onto one action).
pub fn on_one_action(extra: usize, pile: Pile) -> Arc<Deployment> {
    let policies: String = (0..extra)
        .map(|i| {
            let (principal, condition) = match pile {
                Pile::Keyed => (
                    "principal".to_owned(),
                    format!("context.input.order_id == \"blocked-{i}\""),
                ),
                Pile::Ordered => (
                    "principal".to_owned(),
                    format!("context.input.amount > {}", 1_000_000 + i),
                ),
                Pile::PerAgent => (
                    format!("principal == Agent::\"bot-{i}\""),
                    format!("context.input.order_id == \"blocked-{i}\""),
                ),
            };
            format!(
                "@id(\"refund.rule.{i}\")\nforbid ({principal}, action == Action::\"refund\", resource)\nwhen {{ {condition} }};\n"
            )
        })
        .collect();
    extended(policies, "[]".into())
}

fn extended(policies: String, entities: String) -> Arc<Deployment> {
    let builder = match kernel::pack::builder_for(&policies_root(), &["demo"]) {
        Ok(b) => b,
        Err(e) => panic!("shipped packs must read: {e}"),
    };
    let built = builder
        .policies(kernel::Source::new("<generated policies>", policies))
        .entities(kernel::Source::new("<generated entities>", entities))
        .build();
    match built {
        Ok(d) => Arc::new(d),
        Err(e) => panic!("generated deployment: {e}"),
    }
}

/// A started session of tenant `t` (see [`tenant_entities`]).
pub fn started_in(deployment: &Arc<Deployment>, t: &str) -> Session {
    let mut s = session_in(deployment, t, "bench".into());
    let start = Intent::Start {
        request: "bench".into(),
    };
    if let Err(e) = s.step(start, 0) {
        panic!("start: {}", e.error);
    }
    s
}

/// The benchmark's tool call: a $25 refund, allowed everywhere.
pub fn refund() -> Intent {
    Intent::CallTool {
        tool: "refund".into(),
        input: serde_json::json!({"order_id": "ord-1", "amount": 2500}),
        estimated_cost: 0,
    }
}

/// Counts live heap bytes, for memory figures, over mimalloc (the `arbiter` binary's allocator).
/// Install in a bench binary with `#[global_allocator] static A: benches::Counting = benches::Counting;`.
pub struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Counting {
    /// Heap bytes allocated and not yet freed.
    pub fn live() -> usize {
        LIVE.load(std::sync::atomic::Ordering::Relaxed)
    }
}

// SAFETY: forwards every call to mimalloc unchanged; only counts sizes.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, std::sync::atomic::Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// How many of the deployment's policies can apply to `action` by their action scope (the
/// action itself, a group holding it, or any action).
pub fn policies_on(deployment: &Deployment, action: &str, groups: &[&str]) -> usize {
    use cedar_policy::ActionConstraint;
    let named = |uid: &cedar_policy::EntityUid| {
        let id: &str = uid.id().unescaped();
        id == action || groups.contains(&id)
    };
    deployment
        .cedar_policies()
        .policies()
        .filter(|p| match p.action_constraint() {
            ActionConstraint::Any => true,
            ActionConstraint::Eq(a) => named(&a),
            ActionConstraint::In(list) => list.iter().any(named),
        })
        .count()
}

/// The loop the driver benchmarks run: `tool_calls` model turns each asking for one `read_crm`
/// call, then a final answer. Stateless (it reads the transcript), so one instance serves any
/// number of sessions.
pub struct LoopModel {
    /// Tool calls before the answer.
    pub tool_calls: usize,
}

impl runtime::Model for LoopModel {
    fn next_estimate(&self, _: &[runtime::Message]) -> Option<runtime::Estimate> {
        Some(runtime::Estimate {
            tokens: 20,
            cost: 10,
        })
    }

    fn skip(&self) {}

    fn call(&self, call: runtime::ModelCall) -> runtime::ModelFuture<'_> {
        let done = call
            .transcript
            .iter()
            .filter(|m| matches!(m, runtime::Message::Tool { .. }))
            .count();
        let reply = runtime::ModelReply {
            input_tokens: 15,
            output_tokens: 5,
            cost: 10,
            output: serde_json::json!({"turn": done}),
            calls: if done < self.tool_calls {
                vec![read_crm(done)]
            } else {
                vec![]
            },
            answer: (done >= self.tool_calls).then(|| "done".to_owned()),
        };
        Box::pin(async move { Ok(reply) })
    }
}

/// A `read_crm` call for customer `i`.
pub fn read_crm(i: usize) -> Intent {
    Intent::CallTool {
        tool: "read_crm".into(),
        input: serde_json::json!({"customer_id": format!("c-{i}")}),
        estimated_cost: 0,
    }
}

/// A `read_crm` stand-in that answers at once, or (with a gate) once the gate opens, counting the
/// calls that are waiting.
pub struct CrmTool {
    /// Opens the gate when it holds `true`.
    pub gate: Option<tokio::sync::watch::Receiver<bool>>,
    /// Calls started so far.
    pub started: Arc<std::sync::atomic::AtomicUsize>,
}

impl runtime::Tool for CrmTool {
    fn call(&self, _: runtime::ToolCall) -> runtime::ToolFuture<'_> {
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let gate = self.gate.clone();
        Box::pin(async move {
            if let Some(mut gate) = gate {
                let _ = gate.wait_for(|open| *open).await;
            }
            Ok(runtime::ToolOutput {
                value: serde_json::json!({"name": "Ada", "tier": "gold"}),
                cost: 0,
            })
        })
    }
}

/// Session `i` of the acme tenant (ids must differ for the hub and the chain).
pub fn acme_session(deployment: &Arc<Deployment>, i: usize) -> Session {
    session_in(deployment, "acme", format!("s{i}"))
}

/// Base + demo + a `pay` tool whose policies read a count over the last minute, a sum over the
/// last hour and an all-time sum, with the step and time limits lifted so a session can run for
/// millions of events. Built in a copy of `policies/` under `dir`.
pub fn history_deployment(dir: &std::path::Path) -> Arc<Deployment> {
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! { panic!("{what}: {e}") };
    copy_tree(&policies_root(), dir).unwrap_or_else(|e| fail("copy policies", &e));
    let limits = dir.join("base/limits.cedar");
    let text = std::fs::read_to_string(&limits).unwrap_or_else(|e| fail("read limits", &e));
    let lifted = text
        .replace(
            "context.session.steps >= 50",
            "context.session.steps >= 100000000",
        )
        .replace(
            "context.session.elapsed_ms > 600000",
            "context.session.elapsed_ms > 100000000000",
        );
    let pack = dir.join("history");
    let files = [
        (limits, lifted),
        (
            pack.join("counters.toml"),
            "[[counter]]\nname = \"pays_recent\"\naction = \"pay\"\nwindow_ms = 60000\n\n\
             [[counter]]\nname = \"paid_hour\"\naction = \"pay\"\nsum = \"amount\"\nwindow_ms = 3600000\n\n\
             [[counter]]\nname = \"paid_total\"\naction = \"pay\"\nsum = \"amount\"\n"
                .into(),
        ),
        (
            pack.join("history.cedar"),
            "@id(\"history.rate\")\nforbid (principal, action == Action::\"pay\", resource)\nwhen { context.history.pays_recent >= 100000 };\n\n\
             @id(\"history.hourly\")\nforbid (principal, action == Action::\"pay\", resource)\nwhen { context.history.paid_hour + context.input.amount > 1000000000000 };\n\n\
             @id(\"history.lifetime\")\nforbid (principal, action == Action::\"pay\", resource)\nwhen { context.history.paid_total + context.input.amount > 1000000000000000 };\n\n\
             @id(\"history.permit\")\npermit (principal, action == Action::\"pay\", resource);\n"
                .into(),
        ),
        (
            pack.join("tools/pay.json"),
            r#"{"name": "pay", "description": "Pay an amount in cents.", "risk": "low",
                "input_schema": {"type": "object", "properties": {"amount": {"type": "integer", "minimum": 1}},
                                 "required": ["amount"], "additionalProperties": false}}"#
                .into(),
        ),
    ];
    std::fs::create_dir_all(pack.join("tools")).unwrap_or_else(|e| fail("mkdir", &e));
    for (path, text) in files {
        std::fs::write(&path, text).unwrap_or_else(|e| fail("write", &e));
    }
    match load_packs(dir, &["demo", "history"]) {
        Ok(d) => Arc::new(d),
        Err(e) => fail("history deployment", &e),
    }
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// One `pay` call and its result at `t` ms; the events it appended.
pub fn pay_round(s: &mut Session, t: u64) -> usize {
    let call = Intent::CallTool {
        tool: "pay".into(),
        input: serde_json::json!({"amount": 125}),
        estimated_cost: 0,
    };
    let tr = match s.step(call, t) {
        Ok(tr) => tr,
        Err(e) => panic!("pay: {}", e.error),
    };
    let call_id = tr.effects.iter().find_map(|e| match e {
        kernel::Effect::CallTool { call_id, .. } => Some(call_id.clone()),
        _ => None,
    });
    let Some(call_id) = call_id else {
        panic!("pay was not allowed at {t} ms: {:?}", tr.decision)
    };
    let result = Intent::ToolReturned {
        call_id,
        output: serde_json::json!("ok"),
        cost: 0,
    };
    match s.step(result, t + 1) {
        Ok(back) => tr.events.len() + back.events.len(),
        Err(e) => panic!("pay result: {}", e.error),
    }
}

/// A store that keeps nothing but each session's chain head: every append is checked against the
/// session's last event (seq, prev, recomputed hash) and counted. The runtime writes each step
/// here before performing its effects, so a run through it proves no event went missing without
/// holding any event in memory.
#[derive(Default)]
pub struct ChainCheck {
    heads: std::sync::Mutex<std::collections::HashMap<String, (u64, String)>>,
    /// Events appended.
    pub events: std::sync::atomic::AtomicUsize,
    /// Events whose seq, prev or hash did not follow.
    pub broken: std::sync::atomic::AtomicUsize,
}

impl ChainCheck {
    /// Sessions begun.
    pub fn sessions(&self) -> usize {
        self.heads.lock().map_or(0, |h| h.len())
    }
}

impl runtime::store::SessionLog for ChainCheck {
    fn begin(
        &self,
        _: &Deployment,
        config: &SessionConfig,
        _: u64,
    ) -> Result<(), runtime::store::StoreError> {
        if let Ok(mut heads) = self.heads.lock() {
            heads.insert(config.id.clone(), (0, kernel::event::GENESIS.to_owned()));
        }
        Ok(())
    }

    fn append(
        &self,
        _: &str,
        session: &str,
        _: &kernel::Step,
        events: &[kernel::Event],
    ) -> Result<(), runtime::store::StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut heads = self
            .heads
            .lock()
            .map_err(|_| runtime::store::StoreError::Backend("poisoned".into()))?;
        let head = heads
            .get_mut(session)
            .ok_or_else(|| runtime::store::StoreError::NotFound(session.into()))?;
        for e in events {
            let value = serde_json::to_value(e).unwrap_or_default();
            if e.seq != head.0 || e.prev != head.1 || kernel::event::event_hash(&value) != e.hash {
                self.broken.fetch_add(1, Relaxed);
            }
            *head = (e.seq + 1, e.hash.clone());
        }
        self.events.fetch_add(events.len(), Relaxed);
        Ok(())
    }
}
