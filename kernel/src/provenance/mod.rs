//! Value-level provenance: for each argument of a proposed tool call, where its value appeared
//! earlier in the session — the user's request (or an endorsement), trusted data, untrusted
//! content, or nowhere (`novel`: the model made it up).
//!
//! Content enters the [`ContentIndex`] as the session runs: the user's request, each tool result
//! (every string and number in it, one document each; class from the tool's `output_labels`:
//! `trusted`, `untrusted`, or neither), each memory read (the entry's stored labels), each
//! endorsement. Model output is not a source: a value the model only wrote itself stays novel.
//!
//! Policies see `context.provenance`, typed per tool alongside `context.input`: one `Provenance`
//! record per string or number argument, nested records for object arguments, and one aggregated
//! record for an array (`from_*` hold when they hold for every element, `from_untrusted` and
//! `novel` when for any). The `Provenance` record type is declared in `policies/schema.cedarschema`.

mod dates;
mod embedded;
mod index;
mod tokens;

pub use dates::DateOrder;
pub use embedded::embedded;
pub use index::{Class, ContentIndex, Found, OTHER, TRUSTED, UNTRUSTED, USER};
pub use tokens::tokens;

use std::collections::BTreeSet;

use crate::gate::Val;
use serde_json::Value;

use crate::cedar_type::CedarType;

/// The class of content carrying `labels`: `trusted` wins over `untrusted` only when alone; a
/// text labelled both counts as untrusted.
pub fn class_of(labels: &BTreeSet<String>) -> Class {
    if labels.contains("untrusted") {
        UNTRUSTED
    } else if labels.contains("trusted") {
        TRUSTED
    } else {
        OTHER
    }
}

/// Indexes every string and number of a tool's `output` as its own document, each with the labels
/// (and so the class) the first matching rule of `rules` gives its field, else `default`; returns
/// every label applied to a field present.
pub fn add_output(
    index: &mut ContentIndex,
    output: &Value,
    rules: &[(Vec<String>, BTreeSet<String>)],
    default: &BTreeSet<String>,
) -> BTreeSet<String> {
    struct Walk<'a> {
        index: &'a mut ContentIndex,
        rules: &'a [(Vec<String>, BTreeSet<String>)],
        default: &'a BTreeSet<String>,
        applied: BTreeSet<String>,
        path: Vec<String>,
    }
    impl Walk<'_> {
        /// The labels of the field at the current path.
        fn labels(&self) -> &BTreeSet<String> {
            self.rules
                .iter()
                .find(|(pattern, _)| {
                    pattern.len() <= self.path.len()
                        && pattern
                            .iter()
                            .zip(&self.path)
                            .all(|(p, s)| p == "*" || p == s)
                })
                .map_or(self.default, |(_, labels)| labels)
        }

        fn leaf(&mut self, text: &str) {
            let labels = self.labels().clone();
            self.index.add(text, class_of(&labels), &labels);
            self.applied.extend(labels);
        }

        fn value(&mut self, value: &Value) {
            match value {
                Value::String(s) => self.leaf(s),
                Value::Number(n) => self.leaf(&n.to_string()),
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        self.path.push(i.to_string());
                        self.value(v);
                        self.path.pop();
                    }
                }
                Value::Object(map) => {
                    for (k, v) in map {
                        self.path.push(k.clone());
                        self.value(v);
                        self.path.pop();
                    }
                }
                Value::Bool(_) | Value::Null => {}
            }
        }
    }
    let mut walk = Walk {
        index,
        rules,
        default,
        applied: BTreeSet::new(),
        path: Vec::new(),
    };
    walk.value(output);
    walk.applied
}

/// For each top-level argument of `input`, the sources (see [`ContentIndex::source`]) its strings
/// and numbers were found in, sorted; an argument found nowhere has an empty list, one with no
/// string or number is left out. What a decision records so a reviewer can see *why* a value
/// counted as the user's, trusted or untrusted.
pub fn evidence(
    input: &Value,
    index: &ContentIndex,
) -> std::collections::BTreeMap<String, Vec<String>> {
    fn leaves(value: &Value, index: &ContentIndex, out: &mut Option<BTreeSet<u32>>) {
        let mut add = |text: &str| {
            let found = index.find(text);
            out.get_or_insert_with(BTreeSet::new).extend(found.sources);
        };
        match value {
            Value::String(s) if has_tokens(s) => add(s),
            Value::Number(n) => add(&n.to_string()),
            Value::Array(items) => items.iter().for_each(|v| leaves(v, index, out)),
            Value::Object(map) => map.values().for_each(|v| leaves(v, index, out)),
            _ => {}
        }
    }
    let Some(args) = input.as_object() else {
        return Default::default();
    };
    args.iter()
        .filter_map(|(name, v)| {
            let mut found = None;
            leaves(v, index, &mut found);
            let mut names: Vec<String> = found?
                .into_iter()
                .filter_map(|id| index.source_name(id).map(str::to_owned))
                .collect();
            names.sort();
            Some((name.clone(), names))
        })
        .collect()
}

/// Whether `text` has any token (anything but whitespace and control characters), without
/// tokenizing it.
fn has_tokens(text: &str) -> bool {
    text.chars().any(|c| !c.is_whitespace() && !c.is_control())
}

/// Indexes every string and number inside `value` as its own document.
pub fn add_value(index: &mut ContentIndex, value: &Value, class: Class, labels: &BTreeSet<String>) {
    match value {
        Value::String(s) => index.add(s, class, labels),
        Value::Number(n) => index.add(&n.to_string(), class, labels),
        Value::Array(items) => {
            for v in items {
                add_value(index, v, class, labels);
            }
        }
        Value::Object(map) => {
            for v in map.values() {
                add_value(index, v, class, labels);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// Which parts of a tool's input carry provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A string or number, or an array of them: one `Provenance` record.
    Leaf,
    /// An object: its attributes that carry provenance, with whether each is required.
    Record(Vec<(String, bool, Shape)>),
}

impl Shape {
    /// The provenance shape of an argument type; `None` when it holds no strings or numbers.
    pub fn of(ty: &CedarType) -> Option<Self> {
        match ty {
            CedarType::Bool => None,
            CedarType::Set(inner) => Self::of(inner).map(|_| Self::Leaf),
            CedarType::Record(fields) => {
                let attrs: Vec<_> = fields
                    .iter()
                    .filter_map(|f| Self::of(&f.ty).map(|s| (f.name.clone(), f.required, s)))
                    .collect();
                (!attrs.is_empty()).then_some(Self::Record(attrs))
            }
            _ => Some(Self::Leaf),
        }
    }

    /// The shape for a tool's whole input: always a record, possibly empty.
    pub fn of_input(ty: &CedarType) -> Self {
        Self::of(ty).unwrap_or(Self::Record(Vec::new()))
    }

    /// The type in Cedar schema syntax.
    pub fn to_cedarschema(&self) -> String {
        match self {
            Self::Leaf => "Provenance".into(),
            Self::Record(attrs) => {
                let inner: Vec<String> = attrs
                    .iter()
                    .map(|(name, required, s)| {
                        format!(
                            "{}{}: {}",
                            crate::cedar_type::quote(name),
                            if *required { "" } else { "?" },
                            s.to_cedarschema()
                        )
                    })
                    .collect();
                format!("{{ {} }}", inner.join(", "))
            }
        }
    }

    /// The context value for `input` (already validated against the tool's schema).
    pub fn value(&self, input: &Value, index: &ContentIndex) -> Result<Val, String> {
        match self {
            Self::Leaf => {
                let mut agg = Aggregate::default();
                collect(input, index, &mut agg);
                // An array's `from_*` facts hold for every element: for none, vacuously.
                agg.vacuous = agg.values == 0 && input.is_array();
                agg.into_val()
            }
            Self::Record(attrs) => {
                let mut pairs = Vec::new();
                for (name, _, shape) in attrs {
                    // A `null` for a nullable argument is taken as absent, as in `context.input`.
                    if let Some(v) = input.get(name).filter(|v| !v.is_null()) {
                        pairs.push((name.clone(), shape.value(v, index)?));
                    }
                }
                Val::record(pairs)
            }
        }
    }
}

/// The origins of every string or number under one argument.
#[derive(Debug, Default)]
struct Aggregate {
    values: usize,
    all: Class,
    all_user_or_trusted: bool,
    any: Class,
    novel: bool,
    labels: BTreeSet<String>,
    /// An array with nothing in it to have come from anywhere.
    vacuous: bool,
    /// A URL or address inside a string that only untrusted content supplied.
    embedded_from_untrusted: bool,
    /// A URL or address inside a string found nowhere.
    embedded_novel: bool,
}

fn collect(value: &Value, index: &ContentIndex, agg: &mut Aggregate) {
    match value {
        Value::String(s) => agg.add(s, index),
        Value::Number(n) => agg.add(&n.to_string(), index),
        Value::Array(items) => items.iter().for_each(|v| collect(v, index, agg)),
        Value::Object(map) => map.values().for_each(|v| collect(v, index, agg)),
        Value::Bool(_) | Value::Null => {}
    }
}

impl Aggregate {
    fn add(&mut self, text: &str, index: &ContentIndex) {
        if !has_tokens(text) {
            return; // nothing to have come from anywhere
        }
        for e in embedded(text) {
            let found = index.find(e);
            self.embedded_novel |= found.classes == 0;
            self.embedded_from_untrusted |=
                found.classes & UNTRUSTED != 0 && found.classes & (USER | TRUSTED) == 0;
        }
        let found = index.find(text);
        if self.values == 0 {
            self.all = found.classes;
            self.all_user_or_trusted = true;
        } else {
            self.all &= found.classes;
        }
        self.all_user_or_trusted &= found.classes & (USER | TRUSTED) != 0;
        self.any |= found.classes;
        self.novel |= found.classes == 0;
        self.labels.extend(found.labels);
        self.values += 1;
    }

    fn into_val(self) -> Result<Val, String> {
        if self.vacuous {
            let b = Val::Bool;
            return Val::record([
                ("from_user".to_owned(), b(true)),
                ("from_trusted".to_owned(), b(true)),
                ("from_user_or_trusted".to_owned(), b(true)),
                ("from_untrusted".to_owned(), b(false)),
                ("novel".to_owned(), b(false)),
                ("labels".to_owned(), Val::Set(Vec::new())),
                ("embedded_from_untrusted".to_owned(), b(false)),
                ("embedded_novel".to_owned(), b(false)),
            ]);
        }
        let some = self.values > 0;
        let b = Val::Bool;
        Val::record([
            ("from_user".to_owned(), b(some && self.all & USER != 0)),
            (
                "from_trusted".to_owned(),
                b(some && self.all & TRUSTED != 0),
            ),
            (
                "from_user_or_trusted".to_owned(),
                b(some && self.all_user_or_trusted),
            ),
            ("from_untrusted".to_owned(), b(self.any & UNTRUSTED != 0)),
            ("novel".to_owned(), b(self.novel)),
            (
                "labels".to_owned(),
                Val::Set(self.labels.into_iter().map(Val::String).collect()),
            ),
            (
                "embedded_from_untrusted".to_owned(),
                b(self.embedded_from_untrusted),
            ),
            ("embedded_novel".to_owned(), b(self.embedded_novel)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The README says an array's `from_*` facts hold for every element: for no element, they
    /// hold (vacuously), and nothing is untrusted or novel (issue 17, 2).
    #[test]
    fn an_empty_array_is_vacuously_from_the_user() {
        let mut index = ContentIndex::default();
        index.add("send it to ana", USER, &BTreeSet::new());
        let facts = |v: serde_json::Value| {
            let val = Shape::Leaf.value(&v, &index).expect("facts");
            ["from_user", "from_trusted", "from_untrusted", "novel"]
                .map(|k| matches!(val.get(k), Some(Val::Bool(true))))
        };
        assert_eq!(facts(json!([])), [true, true, false, false]);
        assert_eq!(facts(json!(["ana"])), [true, false, false, false]);
        assert_eq!(facts(json!(["bob"])), [false, false, false, true]);
        // A string with nothing in it stays from nowhere: only arrays are vacuous.
        assert_eq!(facts(json!("")), [false, false, false, false]);
    }

    /// A link or address inside a string gets its own origin (issue 17, 5).
    #[test]
    fn links_and_addresses_inside_text_have_their_own_origin() {
        let mut index = ContentIndex::default();
        index.add(
            "share https://docs.home.example/plan with bob",
            USER,
            &BTreeSet::new(),
        );
        let untrusted: BTreeSet<String> = ["untrusted".to_owned()].into();
        index.add(
            "reset at https://evil.example/login now",
            UNTRUSTED,
            &untrusted,
        );
        index.add("mail help@home.example", TRUSTED, &BTreeSet::new());
        let facts = |text: &str| {
            let val = Shape::Leaf.value(&json!(text), &index).expect("facts");
            ["embedded_from_untrusted", "embedded_novel"]
                .map(|k| matches!(val.get(k), Some(Val::Bool(true))))
        };
        assert_eq!(facts("see https://docs.home.example/plan"), [false, false]);
        assert_eq!(
            facts("go to https://evil.example/login please"),
            [true, false]
        );
        assert_eq!(facts("write to help@home.example"), [false, false]);
        assert_eq!(facts("try https://made-up.example/x"), [false, true]);
        assert_eq!(facts("no links at all"), [false, false]);
    }
}
