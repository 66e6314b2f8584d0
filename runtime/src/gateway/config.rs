//! The gateway's config file: who a stdio client acts as, and the upstream MCP servers with what
//! policies need to know of their tools.
//!
//! ```toml
//! [principal]                  # the stdio client's tenant, user, agent and budget
//! tenant = "acme"
//! user = "alice@acme"
//! agent = "desktop@acme"
//! budget = "acme"
//!
//! [servers.fs]                 # tools appear as `fs__<tool>`: action `Action::"fs__read_file"`
//! command = ["node", "server-filesystem/dist/index.js", "/srv/work"]
//! # url = "http://127.0.0.1:9000/mcp"     (Streamable HTTP instead of a child process)
//! risk = "medium"              # its tools' risk unless a tool says otherwise
//! roots = { work = "/srv/work", secret = "/srv/work/secret" }
//!
//! [servers.fs.tools.read_text_file]
//! risk = "low"
//! output_labels = ["untrusted"]
//! paths = ["path"]             # canonicalized; `context.paths.all` / `.any` name the roots
//! ```
//!
//! A tool the file does not mention gets the server's risk (or, without one, `low` for a
//! `readOnlyHint`, `high` for a `destructiveHint`, else `medium`: the server's hints, which the
//! file overrides) and no labels or path rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kernel::{Mode, Risk, Source};
use serde::Deserialize;
use toml::Spanned;

use crate::FileError;

/// Separates a server's name from its tool's in the names clients and policies see.
pub const SEPARATOR: &str = "__";

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Who a stdio client acts as (an HTTP client is named by its bearer token).
    pub principal: Option<Principal>,
    /// Upstream servers by name.
    #[serde(default)]
    pub servers: BTreeMap<Spanned<String>, ServerConfig>,
}

/// A client's agent, user, tenant and budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// `Tenant` entity id (stdio only: an HTTP caller's tenant is its token's).
    #[serde(default)]
    pub tenant: String,
    /// `User` entity id (stdio only).
    #[serde(default)]
    pub user: String,
    /// `Agent` entity id: the principal of every tool call.
    pub agent: String,
    /// `Budget` entity id.
    pub budget: String,
    /// `enforce` (default) or `log_only`.
    #[serde(default)]
    pub mode: ConfigMode,
}

/// Whether denials are enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigMode {
    /// Denials stop the call.
    #[default]
    Enforce,
    /// Denials are recorded; the call goes ahead.
    LogOnly,
}

impl ConfigMode {
    /// The kernel's mode.
    pub fn mode(self) -> Mode {
        match self {
            Self::Enforce => Mode::Enforce,
            Self::LogOnly => Mode::LogOnly,
        }
    }
}

/// One upstream server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Program and arguments of a server spoken to over stdio.
    pub command: Option<Vec<String>>,
    /// Environment variables for the child (nothing else of the gateway's environment but `PATH`
    /// and `HOME` reaches it).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Streamable HTTP endpoint of a server reached over the network.
    pub url: Option<String>,
    /// Risk of its tools unless a tool says otherwise.
    pub risk: Option<Risk>,
    /// Named folders path arguments are confined to (`context.paths`).
    #[serde(default)]
    pub roots: BTreeMap<String, String>,
    /// What policies need to know of each tool, by the server's tool name.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolConfig>,
}

/// What the file says of one tool.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// Its risk.
    pub risk: Option<Risk>,
    /// Tags policies test (`egress`, `payments`...).
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Labels its output adds to the session (`untrusted`, `pii`...).
    #[serde(default)]
    pub output_labels: BTreeSet<String>,
    /// Arguments that are file paths (a string or an array of strings).
    #[serde(default)]
    pub paths: Vec<String>,
}

/// How an upstream is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// A child process spoken to over stdio.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// Its environment.
        env: BTreeMap<String, String>,
    },
    /// A Streamable HTTP endpoint.
    Url(String),
}

/// A loaded config: the file and where each server is.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The parsed file.
    pub file: GatewayConfig,
    /// Servers by name, with how each is reached.
    pub servers: Vec<(String, Reach, ServerConfig)>,
}

/// Reads and checks the config at `path`, taking `${NAME}` from `env` (see [`parse`]).
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::Io {
        path: path.into(),
        source: e,
    })?;
    parse(&Source::new(path.display().to_string(), text), env)
}

/// `text` with every `${NAME}` replaced by `env(NAME)`; the first unset name is the error.
fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let Some(end) = after.find('}') else {
            return Err(format!("`{after}` has no closing `}}`"));
        };
        let name = after.get(2..end).unwrap_or_default();
        out.push_str(&env(name).ok_or_else(|| format!("`${{{name}}}` is not set"))?);
        rest = after.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses and checks a config. In a server's `command`, `env` values, `url` and `roots`, `${NAME}`
/// is the environment variable `NAME` (as `env` gives it), so one file serves every machine and a
/// desktop client's `mcpServers` entry sets the folder; an unset name is an error.
pub fn parse(source: &Source, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, FileError> {
    let mut file: GatewayConfig = toml::from_str(&source.text).map_err(|e| {
        let span = e.span().map(|s| (s.start, s.len()));
        FileError::invalid(source, span, e.message())
    })?;
    for (name, server) in file.servers.iter_mut() {
        let at = |message: String| {
            let span = name.span();
            FileError::invalid(source, Some((span.start, span.len())), &message)
        };
        let fill = |v: &mut String| {
            *v = expand(v, env).map_err(|e| at(format!("server `{}`: {e}", name.get_ref())))?;
            Ok::<(), FileError>(())
        };
        for v in server.command.iter_mut().flatten() {
            fill(v)?;
        }
        for v in server.env.values_mut().chain(server.url.iter_mut()) {
            fill(v)?;
        }
        for v in server.roots.values_mut() {
            fill(v)?;
        }
    }
    let mut servers = Vec::new();
    for (name, server) in &file.servers {
        let at = |message: String| {
            let span = name.span();
            FileError::invalid(source, Some((span.start, span.len())), &message)
        };
        let valid = !name.get_ref().is_empty()
            && name
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(at(format!(
                "server `{}`: a server's name is lowercase letters, digits and `-` (it prefixes its tools' names as `<server>{SEPARATOR}<tool>`)",
                name.get_ref()
            )));
        }
        let reach = match (&server.command, &server.url) {
            (Some(argv), None) if !argv.is_empty() => Reach::Command {
                argv: argv.clone(),
                env: server.env.clone(),
            },
            (None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
                Reach::Url(url.clone())
            }
            (None, Some(url)) => {
                return Err(at(format!(
                    "server `{}`: `url` must be http:// or https://, not `{url}`",
                    name.get_ref()
                )));
            }
            _ => {
                return Err(at(format!(
                    "server `{}`: give exactly one of `command` (a non-empty array) or `url`",
                    name.get_ref()
                )));
            }
        };
        for (root, dir) in &server.roots {
            if !dir.starts_with('/') {
                return Err(at(format!(
                    "server `{}`: root `{root}` = `{dir}` must be an absolute path",
                    name.get_ref()
                )));
            }
        }
        servers.push((name.get_ref().clone(), reach, server.clone()));
    }
    Ok(Loaded { file, servers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Loaded, String> {
        let env = |k: &str| (k == "WORK").then(|| "/srv/work".to_owned());
        parse(&Source::new("gateway.toml", text), &env).map_err(|e| e.to_string())
    }

    #[test]
    fn environment_variables_fill_commands_urls_and_roots() {
        let ok = parsed(
            "[servers.fs]\ncommand = [\"node\", \"${WORK}/x.js\"]\nroots = { w = \"${WORK}\" }\n",
        )
        .unwrap();
        let (_, reach, server) = &ok.servers[0];
        assert_eq!(
            *reach,
            Reach::Command {
                argv: vec!["node".into(), "/srv/work/x.js".into()],
                env: BTreeMap::new()
            }
        );
        assert_eq!(server.roots["w"], "/srv/work");
        let unset = parsed("[servers.fs]\ncommand = [\"${NOPE}\"]\n").unwrap_err();
        assert!(
            unset.contains("`${NOPE}` is not set") && unset.contains(":1:"),
            "{unset}"
        );
    }

    #[test]
    fn a_server_is_a_command_or_a_url() {
        let ok = parsed("[servers.fs]\ncommand = [\"node\", \"x.js\"]\n[servers.web]\nurl = \"http://127.0.0.1:1/mcp\"\n").unwrap();
        assert_eq!(ok.servers.len(), 2);
        let both = parsed("[servers.fs]\ncommand = [\"node\"]\nurl = \"http://x\"\n").unwrap_err();
        assert!(
            both.contains("gateway.toml:1") && both.contains("exactly one"),
            "{both}"
        );
        let neither = parsed("[servers.fs]\nrisk = \"low\"\n").unwrap_err();
        assert!(neither.contains("exactly one"), "{neither}");
    }

    #[test]
    fn names_roots_and_fields_are_checked_with_their_line() {
        let name = parsed("[servers.Fs_1]\ncommand = [\"x\"]\n").unwrap_err();
        assert!(name.contains("lowercase"), "{name}");
        let root =
            parsed("[servers.fs]\ncommand = [\"x\"]\nroots = { w = \"rel\" }\n").unwrap_err();
        assert!(root.contains("absolute"), "{root}");
        let unknown =
            parsed("[servers.fs]\ncommand = [\"x\"]\n\n[servers.fs.tools.read]\nriskk = \"low\"\n")
                .unwrap_err();
        assert!(
            unknown.contains(":5:") && unknown.contains("riskk"),
            "{unknown}"
        );
    }
}
