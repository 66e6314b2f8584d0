//! File-path arguments: compared in canonical form, and confined by facts the kernel computes.
//!
//! Cedar has no per-element test on a set, so `read_multiple_files.paths` cannot be confined to a
//! folder by a policy alone; and `secret/./out.txt` must not slip past a `like "secret/*"`. A tool
//! that declares which arguments are paths ([`PathRules`]) gets both:
//! - every such argument (a string, or an array of strings) is rewritten to its canonical form
//!   before it is validated, authorized, recorded or forwarded — what was decided is what runs;
//! - `context.paths` holds `all`, the names of the declared roots that contain *every* path of the
//!   call, and `any`, those that contain at least one.
//!
//! Canonical form is lexical (the kernel does no I/O): `.` segments and repeated `/` dropped, `..`
//! resolved against the segment before it (never above `/`), no trailing `/`. Symbolic links are
//! not resolved: that is the upstream server's own check.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::gate::Val;

/// Which arguments of a tool are file paths, and the named folders policies may confine them to.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRules {
    /// Top-level arguments holding a path or an array of paths.
    pub arguments: Vec<String>,
    /// Folders by name (absolute): `context.paths.all` / `.any` name those containing the paths.
    #[serde(default)]
    pub roots: BTreeMap<String, String>,
}

/// `path` in canonical form (see the module documentation).
pub fn canonical(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Whether canonical `path` is `root` or lies under it.
fn within(path: &str, root: &str) -> bool {
    path == root
        || root == "/" && path.starts_with('/')
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl PathRules {
    /// What is wrong with these rules for a tool whose input properties are `properties`.
    pub(crate) fn problems(
        &self,
        properties: Option<&serde_json::Map<String, Value>>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for argument in &self.arguments {
            let Some(schema) = properties.and_then(|p| p.get(argument)) else {
                problems.push(format!(
                    "paths: `{argument}` is not an argument of the tool"
                ));
                continue;
            };
            let is = |s: &Value, ty: &str| s.get("type").and_then(Value::as_str) == Some(ty);
            let strings = is(schema, "string")
                || is(schema, "array") && schema.get("items").is_some_and(|i| is(i, "string"));
            if !strings {
                problems.push(format!(
                    "paths: `{argument}` must be a string or an array of strings"
                ));
            }
        }
        for (name, root) in &self.roots {
            if name.is_empty() {
                problems.push("paths: a root needs a name".into());
            }
            if !root.starts_with('/') {
                problems.push(format!(
                    "paths: root `{name}` = `{root}` is not an absolute path"
                ));
            }
        }
        problems
    }

    /// `input` with every path argument in canonical form.
    pub(crate) fn canonicalize(&self, input: &Value) -> Value {
        let mut out = input.clone();
        for argument in &self.arguments {
            match out.get_mut(argument.as_str()) {
                Some(Value::String(s)) => *s = canonical(s),
                Some(Value::Array(items)) => {
                    for item in items {
                        if let Value::String(s) = item {
                            *s = canonical(s);
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The path values of canonical `input`.
    fn values<'a>(&'a self, input: &'a Value) -> impl Iterator<Item = &'a str> {
        self.arguments
            .iter()
            .filter_map(|a| input.get(a.as_str()))
            .flat_map(|v| match v {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            })
    }

    /// `context.paths` for canonical `input`: `{ all, any }`. A call with no path arguments lies
    /// within every root (there is nothing outside).
    pub(crate) fn facts(&self, input: &Value) -> Result<Val, String> {
        let paths: Vec<&str> = self.values(input).collect();
        let roots = self.roots.iter().map(|(n, r)| (n, canonical(r)));
        let (mut all, mut any) = (Vec::new(), Vec::new());
        for (name, root) in roots {
            let inside = paths.iter().filter(|p| within(p, &root)).count();
            if inside == paths.len() {
                all.push(name.as_str());
            }
            if inside > 0 {
                any.push(name.as_str());
            }
        }
        Val::record([
            ("all".to_owned(), Val::strings(all)),
            ("any".to_owned(), Val::strings(any)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_resolves_dots_and_slashes() {
        assert_eq!(canonical("/a/secret/./out.txt"), "/a/secret/out.txt");
        assert_eq!(canonical("/a/b/../secret//x/"), "/a/secret/x");
        assert_eq!(canonical("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(canonical("a/../../b"), "../b");
        assert_eq!(canonical("./"), ".");
        assert_eq!(canonical("/"), "/");
    }

    #[test]
    fn within_is_by_segment_not_by_prefix() {
        assert!(within("/srv/data/x", "/srv/data"));
        assert!(within("/srv/data", "/srv/data"));
        assert!(!within("/srv/database", "/srv/data"));
        assert!(within("/x", "/"));
    }

    fn rules() -> PathRules {
        PathRules {
            arguments: vec!["path".into(), "paths".into()],
            roots: [
                ("work".to_owned(), "/w/".to_owned()),
                ("secret".to_owned(), "/w/secret".to_owned()),
            ]
            .into(),
        }
    }

    fn names(v: &Val, key: &str) -> Vec<String> {
        match v.get(key) {
            Some(Val::Set(items)) => items
                .iter()
                .filter_map(|i| match i {
                    Val::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn every_element_of_an_array_is_confined() {
        let r = rules();
        let inside = r.canonicalize(&json!({"paths": ["/w/a", "/w/b/../c"]}));
        assert_eq!(inside["paths"], json!(["/w/a", "/w/c"]));
        let facts = r.facts(&inside).unwrap();
        assert_eq!(names(&facts, "all"), ["work"]);
        assert_eq!(names(&facts, "any"), ["work"]);

        let one_out = r.canonicalize(&json!({"paths": ["/w/a", "/w/../etc/passwd"]}));
        let facts = r.facts(&one_out).unwrap();
        assert!(names(&facts, "all").is_empty());
        assert_eq!(names(&facts, "any"), ["work"]);

        let into_secret = r.canonicalize(&json!({"path": "/w/x/../secret/./k"}));
        let facts = r.facts(&into_secret).unwrap();
        assert_eq!(names(&facts, "any"), ["secret", "work"]);
    }

    #[test]
    fn rules_must_name_string_arguments_and_absolute_roots() {
        let props = json!({"path": {"type": "string"}, "n": {"type": "integer"}});
        let bad = PathRules {
            arguments: vec!["n".into(), "missing".into()],
            roots: [("r".to_owned(), "relative".to_owned())].into(),
        };
        let problems = bad.problems(props.as_object());
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
