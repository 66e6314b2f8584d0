//! Loading Cedar text: the schema (base plus generated), the policies (re-keyed by `@id`, with
//! their kernel annotations checked) and strict validation, every problem located in its file.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Effect, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

use super::decision::DeterminingPolicy;
use crate::error::LoadError;
use crate::source::{Located, Source};

/// Annotations whose value must be a whole number.
const NUMERIC: [&str; 3] = ["timeout_ms", "max_retries", "approval_timeout_ms"];
/// Annotations that only mean something on a permit (obligations); refused on a forbid.
pub const PERMIT_ONLY: [&str; 2] = ["timeout_ms", "max_retries"];
/// Annotations that only mean something on a forbid; refused on a permit.
pub const FORBID_ONLY: [&str; 4] = ["approval", "approval_timeout_ms", "self_approval", "limit"];

/// What the kernel keeps about each policy besides Cedar's own copy.
pub(crate) struct PolicyMeta {
    /// Id, effect and annotations, as every decision it determines records them (shared).
    pub determining: Arc<DeterminingPolicy>,
    pub at: Located,
}

impl PolicyMeta {
    pub fn id(&self) -> &str {
        &self.determining.id
    }
}

fn first_span(d: &dyn Diagnostic) -> Option<(usize, usize)> {
    d.labels()?.next().map(|l| (l.offset(), l.len()))
}

fn message(d: &dyn Diagnostic) -> String {
    match d.help() {
        Some(help) => format!("{d} (help: {help})"),
        None => d.to_string(),
    }
}

/// Parses the base schema with the generated declarations appended. Errors land in whichever of
/// the two texts they point at.
pub(crate) fn load_schema(base: &Source, generated: &str) -> Result<(Schema, String), LoadError> {
    let declares_nothing = base
        .text
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default().trim())
        .all(str::is_empty);
    if declares_nothing {
        return Err(LoadError::Schema {
            at: base.whole(),
            message: "the schema is empty: it declares no entity types or actions, so no policy \
                      can be validated against it"
                .into(),
        });
    }
    // The base text's own syntax first (a fragment is parsed without resolving its references,
    // which the generated declarations complete): an unterminated last declaration is the base
    // file's error, not the generated text's where Cedar's parser trips over it.
    if let Err(e) = cedar_policy::SchemaFragment::from_cedarschema_str(&base.text) {
        let at = first_span(&e).map_or_else(|| base.whole(), |(o, l)| base.locate(o, l));
        return Err(LoadError::Schema {
            at,
            message: message(&e),
        });
    }
    let combined = format!("{}\n{generated}", base.text);
    match Schema::from_cedarschema_str(&combined) {
        Ok((schema, _warnings)) => Ok((schema, combined)),
        Err(e) => {
            let generated_src = Source::new("<generated from tools and counters>", generated);
            let at = match first_span(&e) {
                Some((offset, len)) if offset <= base.text.len() => base.locate(offset, len),
                Some((offset, len)) => generated_src.locate(offset - base.text.len() - 1, len),
                None => base.whole(),
            };
            Err(LoadError::Schema {
                at,
                message: message(&e),
            })
        }
    }
}

/// Parses every policy file, re-keys each policy by its `@id` and checks the kernel's annotations.
pub(crate) fn load_policies(
    sources: &[Source],
    errors: &mut Vec<LoadError>,
) -> (PolicySet, HashMap<PolicyId, PolicyMeta>) {
    let mut set = PolicySet::new();
    let mut meta: HashMap<PolicyId, PolicyMeta> = HashMap::new();
    for source in sources {
        if let Err((offset, message)) = super::limits::check(&source.text) {
            errors.push(LoadError::PolicySyntax {
                at: source.locate(offset, 1),
                message,
            });
            continue;
        }
        let parsed = match PolicySet::from_str(&source.text) {
            Ok(p) => p,
            Err(e) => {
                for err in e.iter() {
                    let at = first_span(err)
                        .map_or_else(|| source.whole(), |(o, l)| source.locate(o, l));
                    errors.push(LoadError::PolicySyntax {
                        at,
                        message: message(err),
                    });
                }
                continue;
            }
        };
        if let Some(t) = parsed.templates().next() {
            let at = locate_text(source, &t.to_string(), 0).unwrap_or_else(|| source.whole());
            let message = "templates are not supported; write a static policy".into();
            errors.push(LoadError::PolicySyntax { at, message });
        }
        // `from_str` names policies policy0..N in file order; walk them in that order so each
        // policy's text is found after the previous one's.
        let mut policies: Vec<_> = parsed.policies().collect();
        policies.sort_by_key(|p| {
            AsRef::<str>::as_ref(p.id())
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(0)
        });
        let mut cursor = 0;
        for policy in policies {
            let text = policy.to_string();
            let at = match locate_text(source, &text, cursor) {
                Some(at) => {
                    cursor = source.text[cursor..]
                        .find(&text)
                        .map_or(cursor, |o| cursor + o + text.len());
                    at
                }
                None => source.whole(),
            };
            // A policy without an id is still checked, under a name saying where it is: its
            // other errors are reported beside the missing id, not hidden by it.
            let id = match policy.annotation("id") {
                Some(id) => id.to_owned(),
                None => {
                    errors.push(LoadError::MissingId { at: at.clone() });
                    format!("<no @id at {at}>")
                }
            };
            let key = PolicyId::new(&id);
            if let Some(first) = meta.get(&key) {
                errors.push(LoadError::DuplicateId {
                    at,
                    id,
                    first: first.at.clone(),
                });
                continue;
            }
            let effect = match policy.effect() {
                Effect::Permit => "permit",
                Effect::Forbid => "forbid",
            };
            let annotations: BTreeMap<String, String> = policy
                .annotations()
                .filter(|(k, _)| *k != "id")
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            check_annotations(&id, effect, &annotations, &at, errors);
            if let Some(error) = super::constant::erring_constant(policy) {
                errors.push(LoadError::Validation {
                    at: at.clone(),
                    policy: id.clone(),
                    message: format!(
                        "errors on every request it applies to ({error}): Cedar would skip it, \
                         the kernel denies every request it scopes"
                    ),
                });
            }
            if set.add(policy.new_id(key.clone())).is_err() {
                errors.push(LoadError::DuplicateId {
                    at: at.clone(),
                    id: id.clone(),
                    first: at.clone(),
                });
                continue;
            }
            meta.insert(
                key,
                PolicyMeta {
                    determining: Arc::new(DeterminingPolicy {
                        id,
                        effect: effect.to_owned(),
                        annotations,
                    }),
                    at,
                },
            );
        }
    }
    (set, meta)
}

fn locate_text(source: &Source, text: &str, from: usize) -> Option<Located> {
    let offset = source.text.get(from..)?.find(text)? + from;
    Some(source.locate(offset, text.len().min(40)))
}

fn check_annotations(
    id: &str,
    effect: &str,
    annotations: &BTreeMap<String, String>,
    at: &Located,
    errors: &mut Vec<LoadError>,
) {
    let mut fail = |message: String| {
        errors.push(LoadError::Annotation {
            at: at.clone(),
            policy: id.to_owned(),
            message,
        });
    };
    for (key, value) in annotations {
        if NUMERIC.contains(&key.as_str()) && value.parse::<u64>().is_err() {
            fail(format!("@{key}(\"{value}\") must be a whole number"));
        }
        if effect == "forbid" && PERMIT_ONLY.contains(&key.as_str()) {
            fail(format!(
                "@{key} is an obligation and only has an effect on a permit policy"
            ));
        }
        if effect == "permit" && FORBID_ONLY.contains(&key.as_str()) {
            fail(format!("@{key} only has an effect on a forbid policy"));
        }
    }
    if let Some(role) = annotations.get("approval")
        && (role.is_empty() || role.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        fail(format!(
            "@approval(\"{}\") must name the role an approver holds (one word, e.g. \"approver\")",
            role.escape_debug()
        ));
    }
    if let Some(value) = annotations.get("self_approval") {
        if value != "allowed" {
            fail(format!(
                "@self_approval(\"{}\"): the only value is \"allowed\" (the session's own user may approve)",
                value.escape_debug()
            ));
        }
        if !annotations.contains_key("approval") {
            fail("@self_approval only has an effect beside @approval".into());
        }
    }
    if annotations.contains_key("approval") && annotations.contains_key("limit") {
        fail(
            "a policy cannot be both @approval and @limit: an approval cannot lift a limit".into(),
        );
    }
}

/// Strict validation of the whole set; each error names its policy's file and position.
pub(crate) fn validate_policies(
    schema: &Schema,
    set: &PolicySet,
    meta: &HashMap<PolicyId, PolicyMeta>,
    sources: &[Source],
    errors: &mut Vec<LoadError>,
) {
    let result = Validator::new(schema.clone()).validate(set, ValidationMode::Strict);
    for err in result.validation_errors() {
        let policy = err.policy_id();
        let Some(m) = meta.get(policy) else { continue };
        let at = match (
            first_span(err),
            sources.iter().find(|s| s.name == m.at.file),
        ) {
            (Some((offset, len)), Some(source)) => source.locate(offset, len),
            _ => m.at.clone(),
        };
        errors.push(LoadError::Validation {
            at,
            policy: m.id().to_owned(),
            message: message(err),
        });
    }
}
