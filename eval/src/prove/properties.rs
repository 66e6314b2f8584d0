//! The properties file (`properties.toml` beside the policies): what must hold for every request.
//!
//! ```toml
//! [[property]]
//! name = "a high-risk tool call is never allowed before an approval"
//! actions = ["call_tool"]
//! check = "allowed_only_when"
//! condition = 'resource.risk != "high"'
//! ```
//!
//! `check` is one of `allowed_only_when` (every allowed request satisfies `condition`, a Cedar
//! expression over `principal`, `action`, `resource` and `context`), `always_denies`,
//! `never_errors` (no policy of the set can fail to evaluate), or `implies` / `equivalent` /
//! `disjoint` with `other`, a second policy directory (relative to the file) loaded with the same
//! packs. `packs` names the policy sets (`base` plus each pack; default: base with each pack of
//! the directory, one at a time); `actions` limits the requests to these actions (`call_tool` for
//! every tool), default all.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ScenarioError;

/// The file's contents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Properties {
    /// Each property, in file order.
    #[serde(default, rename = "property")]
    pub properties: Vec<Property>,
}

/// One property to prove.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Property {
    /// What it says, for the report.
    pub name: String,
    /// The check.
    pub check: Check,
    /// For `allowed_only_when`: the Cedar condition every allowed request satisfies.
    #[serde(default)]
    pub condition: Option<String>,
    /// For `implies`, `equivalent`, `disjoint`: the other policy directory.
    #[serde(default)]
    pub other: Option<PathBuf>,
    /// The packs (each with `base`) to prove it for; default every pack in the directory.
    #[serde(default)]
    pub packs: Option<Vec<String>>,
    /// The actions whose requests count; default all. `call_tool` stands for every tool.
    #[serde(default)]
    pub actions: Vec<String>,
}

/// The kinds of check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Every request the set allows satisfies `condition`.
    AllowedOnlyWhen,
    /// The set denies every request.
    AlwaysDenies,
    /// No policy of the set errs on any request.
    NeverErrors,
    /// Every request this set allows, `other` allows.
    Implies,
    /// This set and `other` decide every request alike.
    Equivalent,
    /// No request is allowed by both this set and `other`.
    Disjoint,
}

/// Reads and checks a properties file: a missing `condition` or `other` is an error naming the
/// property.
pub fn load(path: &Path) -> Result<Properties, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        path: path.into(),
        source,
    })?;
    let source = kernel::Source::new(path.display().to_string(), text);
    let parsed: Properties = toml::from_str(&source.text).map_err(|e| {
        let at = e.span().map(|s| (s.start, s.len().max(1)));
        ScenarioError::invalid(&source, at, e.message())
    })?;
    for (i, p) in parsed.properties.iter().enumerate() {
        let missing = match p.check {
            Check::AllowedOnlyWhen if p.condition.is_none() => Some("`condition`"),
            Check::Implies | Check::Equivalent | Check::Disjoint if p.other.is_none() => {
                Some("`other`")
            }
            _ => None,
        };
        if let Some(field) = missing {
            let msg = format!("property[{i}] `{}`: {field} is required", p.name);
            let at = source.text.find(&p.name).map(|o| (o, p.name.len()));
            return Err(ScenarioError::invalid(&source, at, &msg));
        }
    }
    Ok(parsed)
}
