//! The kernel's evaluator against Cedar's: random policies (well- and ill-typed, touching missing
//! attributes and entities, overflowing, short-circuiting) on random requests. Wherever the kernel
//! answers, Cedar gives the same answer without error; and it answers often enough for that to
//! mean something.

use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, EntityUid, Policy, PolicyId, PolicySet, Request,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::json;

use super::{Compiled, Input};
use crate::gate::Val;

fn entities() -> Entities {
    let e = |t: &str, id: &str| json!({"__entity": {"type": t, "id": id}});
    let json = json!([
        {"uid": {"type": "User", "id": "alice"}, "parents": [{"type": "Group", "id": "staff"}],
         "attrs": {"age": 30, "name": "alice", "tags": ["a", "b"], "boss": e("User", "bob"),
                   "home": {"city": "x", "zip": 12}}},
        {"uid": {"type": "User", "id": "bob"}, "parents": [],
         "attrs": {"age": 9223372036854775807_i64, "name": "bob", "tags": [], "boss": e("User", "ghost")}},
        {"uid": {"type": "Group", "id": "staff"}, "parents": [{"type": "Group", "id": "all"}], "attrs": {}},
        {"uid": {"type": "Group", "id": "all"}, "parents": [], "attrs": {}},
        {"uid": {"type": "Doc", "id": "d"}, "parents": [{"type": "Group", "id": "staff"}],
         "attrs": {"owner": e("User", "alice"), "risk": "high", "size": -3}},
        {"uid": {"type": "Action", "id": "read"}, "parents": [{"type": "Action", "id": "any"}], "attrs": {}},
        {"uid": {"type": "Action", "id": "any"}, "parents": [], "attrs": {}},
    ]);
    Entities::from_json_value(json, None).expect("entities")
}

const ENTITIES: [&str; 7] = [
    r#"User::"alice""#,
    r#"User::"bob""#,
    r#"User::"ghost""#,
    r#"Group::"staff""#,
    r#"Group::"all""#,
    r#"Doc::"d""#,
    r#"Action::"any""#,
];

/// A policy text from `seed`: expressions mostly of the type their place expects (so comparisons,
/// arithmetic and short-circuits are really exercised), now and then of any type (so are Cedar's
/// type errors).
fn policy_text(seed: u64) -> String {
    let mut g = Gen(seed);
    let effect = g.pick(&["permit", "forbid"]);
    let principal = g.scope("principal");
    let action = g.pick(&[
        "action",
        "action",
        r#"action == Action::"read""#,
        r#"action in Action::"any""#,
        r#"action in [Action::"any", Action::"read"]"#,
        r#"action in [Action::"write"]"#,
    ]);
    let resource = g.scope("resource");
    let conditions: Vec<String> = (0..g.below(3))
        .map(|_| {
            let kind = g.pick(&["when", "unless"]);
            format!("{kind} {{ {} }}", g.boolean(3))
        })
        .collect();
    format!(
        "{effect} ({principal}, {action}, {resource}) {};",
        conditions.join(" ")
    )
}

/// splitmix64, enough for generating text.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn scope(&mut self, var: &str) -> String {
        let e = self.pick(&ENTITIES);
        match self.below(12) {
            0 => format!("{var} == {e}"),
            1 => format!("{var} in {e}"),
            2 => format!("{var} is User"),
            3 => format!("{var} is Doc in {e}"),
            _ => var.to_owned(),
        }
    }

    /// Any type: what an ill-typed place gets.
    fn any(&mut self, depth: u32) -> String {
        match self.below(5) {
            0 => self.boolean(depth),
            1 => self.long(depth),
            2 => self.string(depth),
            3 => self.entity(depth),
            _ => self.set(depth),
        }
    }

    /// One time in twelve, a place gets a value of any type.
    fn wild(&mut self, depth: u32) -> Option<String> {
        (depth > 0 && self.below(12) == 0).then(|| self.any(depth - 1))
    }

    fn long(&mut self, depth: u32) -> String {
        if let Some(w) = self.wild(depth) {
            return w;
        }
        let leaves = [
            "0",
            "1",
            "2",
            "context.n",
            "context.n",
            "context.rec.x",
            "principal.age",
            "30",
            "resource.size",
            "9223372036854775807",
            "-9223372036854775808",
            "context.missing",
        ];
        if depth == 0 || self.below(3) == 0 {
            return self.pick(&leaves).to_owned();
        }
        let d = depth - 1;
        match self.below(5) {
            0 => format!("-({})", self.long(d)),
            1 => format!(
                "if {} then {} else {}",
                self.boolean(d),
                self.long(d),
                self.long(d)
            ),
            _ => {
                let op = self.pick(&["+", "-", "*"]);
                format!("({} {op} {})", self.long(d), self.long(d))
            }
        }
    }

    fn string(&mut self, depth: u32) -> String {
        if let Some(w) = self.wild(depth) {
            return w;
        }
        let leaves = [
            "\"a\"",
            "\"alice\"",
            "\"high\"",
            "\"\"",
            "context.s",
            "principal.name",
            "resource.risk",
            "principal.home.city",
        ];
        self.pick(&leaves).to_owned()
    }

    fn entity(&mut self, depth: u32) -> String {
        if let Some(w) = self.wild(depth) {
            return w;
        }
        let leaves = [
            "principal",
            "resource",
            "action",
            "context.who",
            "principal.boss",
            "resource.owner",
            "principal.boss.boss",
        ];
        match self.below(3) {
            0 => self.pick(&ENTITIES).to_owned(),
            _ => self.pick(&leaves).to_owned(),
        }
    }

    fn set(&mut self, depth: u32) -> String {
        if let Some(w) = self.wild(depth) {
            return w;
        }
        let d = depth.saturating_sub(1);
        match self.below(6) {
            0 => format!("[{}, {}]", self.long(d), self.long(d)),
            1 => format!("[{}, {}]", self.entity(d), self.entity(d)),
            2 => "[]".to_owned(),
            _ => self
                .pick(&[
                    "context.nums",
                    "context.strs",
                    "principal.tags",
                    "[\"a\", \"b\"]",
                ])
                .to_owned(),
        }
    }

    fn boolean(&mut self, depth: u32) -> String {
        if let Some(w) = self.wild(depth) {
            return w;
        }
        if depth == 0 {
            return self
                .pick(&["true", "false", "context.b", "context.missing"])
                .to_owned();
        }
        let d = depth - 1;
        match self.below(20) {
            0 | 1 | 16 | 17 | 18 => {
                let op = self.pick(&["<", "<=", ">", ">=", "==", "!="]);
                format!("({} {op} {})", self.long(d), self.long(d))
            }
            2 => format!("({} == {})", self.string(d), self.string(d)),
            3 => format!("({} == {})", self.any(d), self.any(d)),
            4 => {
                let pattern =
                    self.pick(&["*", "a*", "*e", "a*i*e", "h*gh", "\\*", "", "alice", "**"]);
                format!("({}) like \"{pattern}\"", self.string(d))
            }
            5 => format!("({} in {})", self.entity(d), self.entity(d)),
            6 => format!("({} in {})", self.entity(d), self.set(d)),
            7 => {
                let ty = self.pick(&["User", "Group", "Doc"]);
                match self.below(2) {
                    0 => format!("({}) is {ty}", self.entity(d)),
                    _ => format!("({}) is {ty} in {}", self.entity(d), self.entity(d)),
                }
            }
            8 => {
                let attr = self.pick(&["age", "name", "tags", "boss", "x", "missing", "home"]);
                let on = match self.below(3) {
                    0 => "context.rec".to_owned(),
                    1 => "context".to_owned(),
                    _ => self.entity(d),
                };
                format!("({on}) has {attr}")
            }
            9 => {
                let m = self.pick(&["contains", "containsAll", "containsAny"]);
                let arg = if m == "contains" {
                    self.any(d)
                } else {
                    self.set(d)
                };
                format!("({}).{m}({arg})", self.set(d))
            }
            10 => format!("({}).isEmpty()", self.set(d)),
            11 => format!("!({})", self.boolean(d)),
            12 => format!(
                "if {} then {} else {}",
                self.boolean(d),
                self.boolean(d),
                self.boolean(d)
            ),
            13 => format!("({{a: {}}} == {{a: {}}})", self.long(d), self.long(d)),
            _ => {
                let op = self.pick(&["&&", "||"]);
                format!("({} {op} {})", self.boolean(d), self.boolean(d))
            }
        }
    }
}

fn context() -> impl Strategy<Value = serde_json::Value> {
    let n = prop_oneof![
        4 => prop::sample::select(vec![0_i64, 1, -1, 2, 30]),
        1 => prop::sample::select(vec![i64::MAX, i64::MIN]),
        1 => any::<i64>(),
    ];
    let s = prop::sample::select(vec!["a", "alice", "high", "", "a*b"]);
    let who = prop::sample::select(vec!["alice", "bob", "ghost"]);
    (
        n.clone(),
        s,
        any::<bool>(),
        prop::collection::vec(n, 0..3),
        who,
        any::<bool>(),
    )
        .prop_map(|(n, s, b, nums, who, typed)| {
            // Now and then a value of another type, as an ill-typed request would carry.
            let s = if typed { json!(s) } else { json!(n) };
            json!({
                "n": n, "s": s, "b": b, "nums": nums, "strs": ["a", "b"],
                "rec": {"x": n}, "who": {"__entity": {"type": "User", "id": who}},
            })
        })
}

/// Cedar's verdict on one policy: `Err` when it erred, else whether it was satisfied.
fn cedar(policy: &Policy, request: &Request, entities: &Entities) -> Result<bool, ()> {
    let set = PolicySet::from_policies([policy.clone()]).expect("one policy");
    let response = Authorizer::new().is_authorized(request, &set, entities);
    if response.diagnostics().errors().next().is_some() {
        return Err(());
    }
    Ok(response.diagnostics().reason().any(|id| id == policy.id()))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 8000,
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn wherever_the_kernel_answers_cedar_agrees(
        seed in any::<u64>(),
        principal in prop::sample::select(ENTITIES.to_vec()),
        action in prop::sample::select(vec![r#"Action::"read""#, r#"Action::"any""#, r#"Action::"write""#]),
        resource in prop::sample::select(ENTITIES.to_vec()),
        context in context(),
    ) {
        let text = policy_text(seed);
        // Generated text Cedar's parser refuses (a few operator mixes) is not a policy.
        let Ok(policy) = Policy::parse(Some(PolicyId::new("p")), &text) else {
            return Ok(());
        };
        let uid = |s: &str| EntityUid::from_str(s).expect("uid");
        let (p, a, r) = (uid(principal), uid(action), uid(resource));
        let cedar_context = Context::from_json_value(context.clone(), None).expect("context");
        let request = Request::new(p.clone(), a.clone(), r.clone(), cedar_context.clone(), None)
            .expect("request");
        let entities = entities();
        let expected = cedar(&policy, &request, &entities);
        let names = context.as_object().expect("object").keys();
        let record = Val::record(names.map(|k| {
            let v = cedar_context.get(k).expect("attribute");
            (k.clone(), Val::from_eval(&v))
        }));
        let record = record.expect("record");
        let input = Input { principal: &p, action: &a, resource: &r, context: &record, entities: &entities, vars: Default::default() };
        if let Some(answer) = Compiled::new(&policy).and_then(|c| c.satisfied(&input)) {
            prop_assert_eq!(Ok(answer), expected, "{}", text);
        }
    }
}

/// The property above holds vacuously if the kernel never answers; over the same generator it
/// must answer for most policies, both ways.
#[test]
fn the_kernel_answers_most_generated_policies() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let entities = entities();
    let (mut parsed, mut answered, mut satisfied) = (0, 0, 0);
    for _ in 0..2000 {
        let tree = (any::<u64>(), context())
            .new_tree(&mut runner)
            .expect("value");
        let (seed, context) = tree.current();
        let text = policy_text(seed);
        let Ok(policy) = Policy::parse(Some(PolicyId::new("p")), &text) else {
            continue;
        };
        parsed += 1;
        let uid = |s: &str| EntityUid::from_str(s).expect("uid");
        let (p, a, r) = (
            uid(r#"User::"alice""#),
            uid(r#"Action::"read""#),
            uid(r#"Doc::"d""#),
        );
        let cedar_context = Context::from_json_value(context.clone(), None).expect("context");
        let record = Val::record(context.as_object().expect("object").keys().map(|k| {
            (
                k.clone(),
                Val::from_eval(&cedar_context.get(k).expect("attribute")),
            )
        }))
        .expect("record");
        let input = Input {
            principal: &p,
            action: &a,
            resource: &r,
            context: &record,
            entities: &entities,
            vars: Default::default(),
        };
        let answer = Compiled::new(&policy).and_then(|c| c.satisfied(&input));
        answered += usize::from(answer.is_some());
        satisfied += usize::from(answer == Some(true));
    }
    assert!(parsed > 1500, "{parsed} of 2000 generated policies parsed");
    assert!(answered * 2 > parsed, "answered {answered} of {parsed}");
    assert!(
        satisfied * 10 > answered,
        "satisfied {satisfied} of {answered}"
    );
}
