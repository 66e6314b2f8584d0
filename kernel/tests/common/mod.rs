//! Shared fixtures: the shipped base + demo packs and a started acme session.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use kernel::pack::{builder_for, load_packs};
use kernel::{Deployment, Effect, Intent, Mode, Session, SessionConfig, Source, Transition};
use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

pub fn demo() -> Arc<Deployment> {
    match load_packs(&root(), &["demo"]) {
        Ok(d) => Arc::new(d),
        Err(e) => panic!("the shipped packs must load: {e}"),
    }
}

/// base + demo + one extra policy file.
pub fn demo_with(extra: &str) -> Arc<Deployment> {
    let built =
        builder_for(&root(), &["demo"]).map(|b| b.policies(Source::new("extra.cedar", extra)));
    match built
        .map_err(|e| e.to_string())
        .and_then(|b| b.build().map_err(|e| e.to_string()))
    {
        Ok(d) => Arc::new(d),
        Err(e) => panic!("bundle with extra policy must load: {e}"),
    }
}

pub fn config(mode: Mode) -> SessionConfig {
    SessionConfig {
        id: "s1".into(),
        tenant: "acme".into(),
        user: "alice@acme".into(),
        agent: "assistant@acme".into(),
        budget: "acme".into(),
        mode,
    }
}

pub fn started_on(deployment: Arc<Deployment>, config: SessionConfig) -> Session {
    let mut s = Session::new(deployment, config).expect("valid session config");
    s.step(
        Intent::Start {
            request: "help me".into(),
        },
        0,
    )
    .expect("start");
    s
}

pub fn started() -> Session {
    started_on(demo(), config(Mode::Enforce))
}

pub fn tool(name: &str, input: Value) -> Intent {
    Intent::CallTool {
        tool: name.into(),
        input,
        estimated_cost: 0,
    }
}

pub fn returned(call_id: &str, output: Value) -> Intent {
    Intent::ToolReturned {
        call_id: call_id.into(),
        output,
        cost: 0,
    }
}

pub fn kinds(t: &Transition) -> Vec<&'static str> {
    t.events.iter().map(|e| e.body.kind()).collect()
}

/// The call id of the transition's tool or model effect.
pub fn call_id(t: &Transition) -> String {
    t.effects
        .iter()
        .find_map(|e| match e {
            Effect::CallTool { call_id, .. } | Effect::CallModel { call_id, .. } => {
                Some(call_id.clone())
            }
            _ => None,
        })
        .expect("a call effect")
}

pub fn step(s: &mut Session, intent: Intent, now: u64) -> Transition {
    match s.step(intent, now) {
        Ok(t) => t,
        Err(r) => panic!("unexpected rejection: {}", r.error),
    }
}

/// A short real session's events: start, a model call and response, a tool call and result.
pub fn sample_events() -> Vec<kernel::Event> {
    let mut s = Session::new(demo(), config(Mode::Enforce)).expect("session");
    let mut out = Vec::new();
    out.extend(
        step(
            &mut s,
            Intent::Start {
                request: "hi".into(),
            },
            0,
        )
        .events,
    );
    let t = step(
        &mut s,
        Intent::CallModel {
            model: "small".into(),
            estimated_tokens: 10,
            estimated_cost: 5,
        },
        1,
    );
    let id = call_id(&t);
    out.extend(t.events);
    out.extend(
        step(
            &mut s,
            Intent::ModelResponded {
                call_id: id,
                input_tokens: 7,
                output_tokens: 3,
                cost: 4,
                output: serde_json::json!("x"),
            },
            2,
        )
        .events,
    );
    let t = step(
        &mut s,
        tool("web_search", serde_json::json!({"query": "q"})),
        3,
    );
    let id = call_id(&t);
    out.extend(t.events);
    out.extend(step(&mut s, returned(&id, serde_json::json!("page")), 4).events);
    out.extend(
        step(
            &mut s,
            Intent::Complete {
                answer: "done".into(),
            },
            5,
        )
        .events,
    );
    out
}
