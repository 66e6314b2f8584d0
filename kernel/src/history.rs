//! History-aware policies: counters and running sums declared as data (`counters.toml`),
//! maintained incrementally and exposed to Cedar as `context.history.<name>`.
//!
//! Each counter keeps its total and, when windowed, a queue of (time, amount) entries. A step adds
//! at most one entry per counter and each entry leaves the queue once, so upkeep is amortized O(1)
//! per step and memory is bounded by the entries inside the window; nothing rescans the log.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cedar_type::CedarType;
use crate::error::LoadError;
use crate::source::Source;
use crate::tools::{BUILTIN_ACTIONS, ToolRegistry};

/// One counter: what it counts or sums, and over which window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterSpec {
    /// Its name in `context.history`.
    pub name: String,
    /// What is counted: a tool's name, `call_tool` (any tool), `call_model`, `read_memory` or
    /// `write_memory`. Only allowed calls count.
    pub action: String,
    /// For a running sum: the integer argument to add (dotted path into the tool's input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<String>,
    /// Count only the last `window_ms` logical milliseconds; without it, the whole session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountersFile {
    #[serde(default)]
    counter: Vec<CounterSpec>,
}

/// The deployment's counters, indexed by the action that feeds them.
#[derive(Default)]
pub(crate) struct Counters {
    pub specs: Vec<CounterSpec>,
    by_action: HashMap<String, Vec<usize>>,
}

impl Counters {
    /// Parses and checks a counters file against the registered tools.
    pub fn load(sources: &[Source], tools: &ToolRegistry, errors: &mut Vec<LoadError>) -> Self {
        let mut counters = Self::default();
        for source in sources {
            counters.load_one(source, tools, errors);
        }
        counters
    }

    fn load_one(&mut self, source: &Source, tools: &ToolRegistry, errors: &mut Vec<LoadError>) {
        let file: CountersFile = match toml::from_str(&source.text) {
            Ok(f) => f,
            Err(e) => {
                let at = e
                    .span()
                    .map_or_else(|| source.whole(), |s| source.locate(s.start, s.len()));
                errors.push(LoadError::Counters {
                    at,
                    message: e.message().to_owned(),
                });
                return;
            }
        };
        let counters = self;
        for spec in file.counter {
            let at = source
                .text
                .find(&format!("\"{}\"", spec.name))
                .map_or_else(|| source.whole(), |o| source.locate(o, spec.name.len() + 2));
            match check(&spec, &counters.specs, tools) {
                Ok(()) => {
                    let i = counters.specs.len();
                    counters
                        .by_action
                        .entry(spec.action.clone())
                        .or_default()
                        .push(i);
                    counters.specs.push(spec);
                }
                Err(message) => errors.push(LoadError::Counters { at, message }),
            }
        }
    }

    /// The Cedar declaration of `History`.
    pub fn cedar_schema(&self) -> String {
        let mut attrs = vec!["\"tools_called\": Set<String>".to_owned()];
        attrs.extend(self.specs.iter().map(|c| format!("\"{}\": Long", c.name)));
        format!("type History = {{ {} }};\n", attrs.join(", "))
    }
}

fn check(spec: &CounterSpec, earlier: &[CounterSpec], tools: &ToolRegistry) -> Result<(), String> {
    let name = &spec.name;
    let ident = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ident || name == "tools_called" {
        return Err(format!(
            "`{name}` must be an identifier other than `tools_called`"
        ));
    }
    if earlier.iter().any(|c| &c.name == name) {
        return Err(format!("counter `{name}` is declared twice"));
    }
    if spec.window_ms == Some(0) {
        return Err(format!("counter `{name}`: window_ms must be positive"));
    }
    let is_tool = tools.get(&spec.action).is_some();
    let countable = ["call_tool", "call_model", "read_memory", "write_memory"];
    if !is_tool && !countable.contains(&spec.action.as_str()) {
        let known = if BUILTIN_ACTIONS.contains(&spec.action.as_str()) {
            " (not a countable action)"
        } else {
            ""
        };
        return Err(format!(
            "counter `{name}`: `{}` is not a registered tool or countable action{known}",
            spec.action
        ));
    }
    if let Some(path) = &spec.sum {
        let ty = tools.input_type(&spec.action).ok_or_else(|| {
            format!(
                "counter `{name}`: `sum` needs `action` to name one tool, whose argument it adds"
            )
        })?;
        match ty.field(path) {
            Some((CedarType::Long, _)) => {}
            Some(_) => {
                return Err(format!(
                    "counter `{name}`: argument `{path}` of `{}` is not an integer",
                    spec.action
                ));
            }
            None => {
                return Err(format!(
                    "counter `{name}`: `{}` has no argument `{path}`",
                    spec.action
                ));
            }
        }
    }
    Ok(())
}

#[derive(Clone, Default)]
struct CounterState {
    total: i64,
    entries: VecDeque<(u64, i64)>,
}

/// A session's history: counter states and the tools already called.
#[derive(Clone, Default)]
pub(crate) struct History {
    counters: Vec<CounterState>,
    pub tools_called: BTreeSet<String>,
}

impl History {
    pub fn new(counters: &Counters) -> Self {
        Self {
            counters: vec![CounterState::default(); counters.specs.len()],
            tools_called: BTreeSet::new(),
        }
    }

    /// Records an allowed call of `action` (a tool name or a built-in action) at `now`.
    pub fn record(
        &mut self,
        counters: &Counters,
        action: &str,
        is_tool: bool,
        input: Option<&Value>,
        now: u64,
    ) {
        if is_tool {
            self.tools_called.insert(action.to_owned());
        }
        let direct = counters.by_action.get(action).into_iter().flatten();
        let any_tool = counters
            .by_action
            .get("call_tool")
            .filter(|_| is_tool)
            .into_iter()
            .flatten();
        for &i in direct.chain(any_tool) {
            let (Some(spec), Some(state)) = (counters.specs.get(i), self.counters.get_mut(i))
            else {
                continue;
            };
            let amount = match &spec.sum {
                Some(path) => input.and_then(|v| lookup(v, path)).unwrap_or(0),
                None => 1,
            };
            state.total = state.total.saturating_add(amount);
            if spec.window_ms.is_some() {
                state.entries.push_back((now, amount));
            }
        }
    }

    /// Each counter's value at `now` (entries older than the window expire first).
    pub fn values<'a>(
        &'a mut self,
        counters: &'a Counters,
        now: u64,
    ) -> impl Iterator<Item = (&'a str, i64)> + 'a {
        self.counters
            .iter_mut()
            .zip(&counters.specs)
            .map(move |(state, spec)| {
                if let Some(window) = spec.window_ms {
                    while let Some(&(t, amount)) = state.entries.front() {
                        if t.saturating_add(window) > now {
                            break;
                        }
                        state.total = state.total.saturating_sub(amount);
                        state.entries.pop_front();
                    }
                }
                (spec.name.as_str(), state.total)
            })
    }
}

fn lookup(value: &Value, path: &str) -> Option<i64> {
    let mut v = value;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn counters(specs: Vec<CounterSpec>) -> Counters {
        let mut c = Counters::default();
        for (i, s) in specs.into_iter().enumerate() {
            c.by_action.entry(s.action.clone()).or_default().push(i);
            c.specs.push(s);
        }
        c
    }

    #[test]
    fn windowed_counts_expire_and_sums_add_arguments() {
        let c = counters(vec![
            CounterSpec {
                name: "emails".into(),
                action: "send_email".into(),
                sum: None,
                window_ms: Some(1000),
            },
            CounterSpec {
                name: "refunds".into(),
                action: "refund".into(),
                sum: Some("amount".into()),
                window_ms: None,
            },
            CounterSpec {
                name: "tools".into(),
                action: "call_tool".into(),
                sum: None,
                window_ms: None,
            },
        ]);
        let mut h = History::new(&c);
        h.record(&c, "send_email", true, None, 0);
        h.record(&c, "send_email", true, None, 500);
        h.record(&c, "refund", true, Some(&json!({"amount": 120})), 600);
        h.record(&c, "refund", true, Some(&json!({"amount": 30})), 700);
        h.record(&c, "call_model", false, None, 700);
        let at = |h: &mut History, now| {
            h.values(&c, now)
                .map(|(n, v)| (n.to_owned(), v))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            at(&mut h, 999),
            vec![
                ("emails".into(), 2),
                ("refunds".into(), 150),
                ("tools".into(), 4)
            ]
        );
        assert_eq!(
            at(&mut h, 1000)[0],
            ("emails".into(), 1),
            "the entry at 0 leaves the window at 1000"
        );
        assert_eq!(at(&mut h, 1500)[0], ("emails".into(), 0));
        assert_eq!(
            h.tools_called.iter().collect::<Vec<_>>(),
            ["refund", "send_email"]
        );
    }
}
