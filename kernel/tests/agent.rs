//! The agent loop's own contract, without any driver: what it proposes, in which order, and how
//! it resumes. (Every scenario exercises it through replay and the runtime as well.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use kernel::agent::{AgentLoop, Answer, Control, Estimate, Message, Next, Planner, Stepped};
use kernel::{Effect, EventBody, Intent, Mode, Session, Status, Step};
use serde_json::json;

/// A planner with `turns` model calls left.
struct Turns {
    left: usize,
    skipped: usize,
    goes_on: bool,
}

impl Planner for Turns {
    fn next_estimate(&mut self, _: &[Message]) -> Option<Estimate> {
        (self.left > 0).then_some(Estimate {
            tokens: 10,
            cost: 0,
        })
    }
    fn skip(&mut self) {
        self.left -= 1;
        self.skipped += 1;
    }
    fn continues_after_failure(&self) -> bool {
        self.goes_on
    }
    fn plan_from_output(&self, output: &serde_json::Value) -> Option<kernel::agent::Plan> {
        let tool = output.get("tool")?.as_str()?;
        Some((
            vec![Intent::CallTool {
                tool: tool.into(),
                input: json!({"customer_id": "c1"}),
                estimated_cost: 0,
            }],
            None,
        ))
    }
}

fn stepped(next: Next) -> Box<Stepped> {
    match next {
        Next::Stepped(s) => s,
        other => panic!("expected a step, got {other:?}"),
    }
}

fn kinds(s: &Stepped) -> Vec<&'static str> {
    s.events().iter().map(|e| e.body.kind()).collect()
}

fn fresh() -> AgentLoop {
    let session = Session::new(demo(), config(Mode::Enforce)).expect("session");
    AgentLoop::new(session, "small")
}

fn model_call_id(s: &Stepped) -> String {
    let t = s.result.as_ref().expect("allowed");
    match t.effects.first() {
        Some(Effect::CallModel { call_id, .. }) => call_id.clone(),
        other => panic!("expected a model call, got {other:?}"),
    }
}

fn reply(call_id: &str, tool: &str) -> Answer {
    Answer {
        intent: Intent::ModelResponded {
            call_id: call_id.into(),
            input_tokens: 1,
            output_tokens: 1,
            cost: 0,
            output: json!({"tool": tool}),
        },
        plan: Some((
            vec![Intent::CallTool {
                tool: tool.into(),
                input: json!({"customer_id": "c1"}),
                estimated_cost: 0,
            }],
            Some("done".into()),
        )),
        from_model: true,
    }
}

#[test]
fn a_reply_s_calls_run_in_order_then_its_answer_completes_the_session() {
    let mut agent = fresh();
    let mut planner = Turns {
        left: 1,
        skipped: 0,
        goes_on: true,
    };
    agent.start("look up c1".into(), 0);
    let call = stepped(agent.next(0, &mut planner));
    assert!(kinds(&call).contains(&"model_called"));
    agent.deliver(reply(&model_call_id(&call), "read_crm"));
    assert!(kinds(&stepped(agent.next(5, &mut planner))).contains(&"model_responded"));
    let tool = stepped(agent.next(5, &mut planner));
    assert!(kinds(&tool).contains(&"tool_called"), "{:?}", kinds(&tool));
    assert!(matches!(
        agent.next(5, &mut planner),
        Next::Wait { until: None }
    ));
    let call_id = match tool.result.as_ref().expect("allowed").effects.first() {
        Some(Effect::CallTool { call_id, .. }) => call_id.clone(),
        other => panic!("{other:?}"),
    };
    agent.deliver(Answer::result(Intent::ToolReturned {
        call_id,
        output: json!({"name": "Ann"}),
        cost: 0,
    }));
    stepped(agent.next(9, &mut planner));
    let done = stepped(agent.next(9, &mut planner));
    assert!(kinds(&done).contains(&"completed"));
    assert!(matches!(agent.next(9, &mut planner), Next::Finished));
    // The transcript holds the request, the model's turn and what became of its call.
    assert!(matches!(
        agent.transcript(),
        [Message::User { .. }, Message::Assistant { .. }, Message::Tool { content, .. }]
            if content.contains("Ann")
    ));
}

#[test]
fn a_delivered_result_wins_a_tie_with_a_control_due_at_the_same_instant() {
    let mut agent = fresh().schedule(vec![(5, Control::Tick)]);
    let mut planner = Turns {
        left: 1,
        skipped: 0,
        goes_on: true,
    };
    agent.start("hi".into(), 0);
    let call = stepped(agent.next(0, &mut planner));
    assert!(matches!(
        agent.next(0, &mut planner),
        Next::Wait { until: Some(5) }
    ));
    agent.deliver(reply(&model_call_id(&call), "read_crm"));
    assert!(kinds(&stepped(agent.next(5, &mut planner))).contains(&"model_responded"));
    assert!(kinds(&stepped(agent.next(5, &mut planner))).contains(&"clock_ticked"));
}

#[test]
fn a_model_call_that_failed_for_good_fails_a_live_agent_and_a_denied_one_is_skipped() {
    let mut agent = fresh();
    let mut live = Turns {
        left: 1,
        skipped: 0,
        goes_on: false,
    };
    agent.start("hi".into(), 0);
    let call = stepped(agent.next(0, &mut live));
    agent.deliver(Answer {
        intent: Intent::CallFailed {
            call_id: model_call_id(&call),
            error: "bad request".into(),
            retryable: false,
            cost: 0,
            jitter_ms: 0,
        },
        plan: None,
        from_model: true,
    });
    stepped(agent.next(1, &mut live));
    let failed = stepped(agent.next(1, &mut live));
    assert!(
        failed.events().iter().any(|e| matches!(
            &e.body,
            EventBody::Failed { error } if error.contains("the model call failed for good: bad request")
        )),
        "{:?}",
        kinds(&failed)
    );
    assert_eq!(agent.session().status(), Status::Failed);

    // A model the policies forbid is never called: the planner drops that turn.
    let session = Session::new(
        demo_with(
            r#"@id("no.models") forbid (principal, action == Action::"call_model", resource);"#,
        ),
        config(Mode::Enforce),
    )
    .expect("session");
    let mut agent = AgentLoop::new(session, "small");
    let mut planner = Turns {
        left: 2,
        skipped: 0,
        goes_on: true,
    };
    agent.start("hi".into(), 0);
    stepped(agent.next(0, &mut planner));
    stepped(agent.next(0, &mut planner));
    assert_eq!(planner.skipped, 2);
    assert!(matches!(
        agent.next(0, &mut planner),
        Next::Wait { until: None }
    ));
}

#[test]
fn resuming_replays_the_steps_and_declares_the_call_in_flight_in_doubt() {
    let mut agent = fresh();
    let mut planner = Turns {
        left: 1,
        skipped: 0,
        goes_on: true,
    };
    let mut steps: Vec<Step> = Vec::new();
    let mut events = Vec::new();
    let mut keep = |s: Stepped, steps: &mut Vec<Step>| {
        events.extend(s.events().iter().cloned());
        steps.push(s.step().expect("intents kept"));
    };
    keep(agent.start("look up c1".into(), 0), &mut steps);
    let call = stepped(agent.next(0, &mut planner));
    let call_id = model_call_id(&call);
    keep(*call, &mut steps);
    agent.deliver(reply(&call_id, "read_crm"));
    keep(*stepped(agent.next(5, &mut planner)), &mut steps);
    keep(*stepped(agent.next(5, &mut planner)), &mut steps); // tool_called, then the crash

    let mut resumed = fresh();
    let done = resumed
        .resume(steps.clone(), events.clone(), &planner)
        .expect("the log reproduces");
    assert_eq!(done.events, events);
    let doubt = stepped(resumed.next(6, &mut planner));
    assert!(
        kinds(&doubt).contains(&"call_in_doubt"),
        "{:?}",
        kinds(&doubt)
    );

    // A log the session does not reproduce is refused.
    let mut tampered = events.clone();
    tampered.last_mut().expect("events").t_ms += 1;
    assert!(fresh().resume(steps, tampered, &planner).is_err());
}
