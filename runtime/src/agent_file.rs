//! Agent files: what `arbiter run` needs to run one live session — the policies, who runs it, the
//! model endpoint, and how each tool is reached.
//!
//! ```toml
//! policies = "../policies"          # relative to this file; default: the nearest `policies/` above
//! packs = ["support"]
//! tenant = "shopco"
//! user = "carol@shopco"
//! agent = "support@shopco"
//! budget = "shopco"
//! mode = "enforce"
//!
//! [model]
//! entity = "small"                  # the Cedar `Model` entity: prices and policies
//! endpoint = "http://127.0.0.1:8089/v1"
//! name = "llama3.1"                 # the server's model name
//! api_key_env = "OPENAI_API_KEY"    # optional: the variable holding the key
//!
//! [tools.lookup_order]
//! command = ["python3", "tools/lookup_order.py"]
//!
//! [tools.crm_lookup]
//! url = "https://crm.example/lookup"
//! headers = [{ header = "Authorization", credential = "CRM_TOKEN", prefix = "Bearer " }]
//! credentials = { CRM_TOKEN = "SHOPCO_CRM_TOKEN" }   # credential → environment variable
//! ```
//!
//! Secrets never appear in the file: it names the environment variables that hold them, and a
//! named variable that is unset is an error, not an empty credential.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::models::openai::{OpenAiConfig, OpenAiModel, Pricing};
use crate::{Credentials, HttpTool, Runtime, SubprocessTool, Tool};
use cedar_policy::EvalResult;
use kernel::{Deployment, Mode, SessionConfig, Source};
use serde::Deserialize;
use toml::Spanned;

use crate::FileError;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// The policy directory, relative to the file.
    pub policies: Option<PathBuf>,
    /// Packs loaded on top of `base`.
    #[serde(default)]
    pub packs: Vec<String>,
    /// `Tenant` entity id.
    pub tenant: String,
    /// `User` entity id.
    pub user: String,
    /// `Agent` entity id.
    pub agent: String,
    /// `Budget` entity id.
    pub budget: String,
    /// Enforcement mode; no default.
    pub mode: Mode,
    /// The prompt used when `--prompt` is not given.
    pub prompt: Option<String>,
    /// How often the clock ticks (`continue_session`), in ms; default 1000.
    pub tick_ms: Option<u64>,
    /// The model.
    pub model: Spanned<ModelSection>,
    /// How each tool offered to the model is reached.
    #[serde(default)]
    pub tools: BTreeMap<String, Spanned<ToolBinding>>,
}

/// The `[model]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// The Cedar `Model` entity id.
    pub entity: String,
    /// The OpenAI-compatible base URL.
    pub endpoint: String,
    /// The server's model name.
    pub name: String,
    /// The environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// System prompt.
    pub system: Option<String>,
    /// Completion tokens at most per call; default 512.
    pub max_tokens: Option<u32>,
    /// Stream responses; default true.
    pub stream: Option<bool>,
}

/// One `[tools.NAME]` table: exactly one of `command` and `url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolBinding {
    /// A program and its arguments, run in the agent file's folder.
    pub command: Option<Vec<String>>,
    /// Environment variables the program may inherit (besides its credentials).
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// An HTTP endpoint taking a JSON POST.
    pub url: Option<String>,
    /// Headers filled from credentials (HTTP tools).
    #[serde(default)]
    pub headers: Vec<HeaderBinding>,
    /// Credential name → the environment variable it is read from, for this file's tenant.
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
}

/// A header filled from a credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderBinding {
    /// Header name.
    pub header: String,
    /// Credential name.
    pub credential: String,
    /// Text before the secret, e.g. `Bearer `.
    #[serde(default)]
    pub prefix: String,
}

/// An agent ready to run.
pub struct Agent {
    /// The loaded policies.
    pub deployment: Arc<Deployment>,
    /// The session's configuration (id still to be chosen by the caller).
    pub config: SessionConfig,
    /// The runtime with model, tools and credentials.
    pub runtime: Runtime,
    /// The default prompt.
    pub prompt: Option<String>,
    /// Clock tick period.
    pub tick_every: Duration,
}

/// Loads an agent file and everything it names; `env` reads environment variables (injected so
/// tests need not touch the process environment).
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Agent, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::Io {
        path: path.into(),
        source: e,
    })?;
    let source = Source::new(path.display().to_string(), text);
    let file: AgentFile = toml::from_str(&source.text).map_err(|e| {
        let span = e.span().map(|s| (s.start, s.len()));
        FileError::invalid(&source, span, e.message())
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let root = match &file.policies {
        Some(p) => dir.join(p),
        None => dir
            .ancestors()
            .map(|a| a.join("policies"))
            .find(|p| p.join("schema.cedarschema").is_file())
            .ok_or_else(|| FileError::invalid(&source, None, "no `policies/` above this file"))?,
    };
    let packs: Vec<&str> = file.packs.iter().map(String::as_str).collect();
    let deployment = kernel::pack::load_packs(&root, &packs).map_err(|e| FileError::Policies {
        file: source.name.clone(),
        source: e,
    })?;
    let at = |span: std::ops::Range<usize>, message: String| {
        FileError::invalid(&source, Some((span.start, span.len())), &message)
    };

    let m = file.model.get_ref();
    let model_span = file.model.span();
    let pricing = pricing(&deployment, &m.entity).map_err(|e| at(model_span.clone(), e))?;
    let api_key = match &m.api_key_env {
        Some(var) => Some(env(var).ok_or_else(|| {
            at(
                model_span.clone(),
                format!("the API key variable `{var}` is not set"),
            )
        })?),
        None => None,
    };

    let mut credentials = Credentials::default();
    let mut tools: Vec<(String, Arc<dyn Tool>)> = Vec::new();
    let mut specs = Vec::new();
    for (name, binding) in &file.tools {
        let span = binding.span();
        let b = binding.get_ref();
        let Some(spec) = deployment.tool(name) else {
            return Err(at(
                span,
                format!("`{name}` is not a registered tool of these packs"),
            ));
        };
        specs.push(spec.clone());
        for (credential, var) in &b.credentials {
            let value = env(var).ok_or_else(|| {
                at(
                    span.clone(),
                    format!("credential `{credential}` reads `{var}`, which is not set"),
                )
            })?;
            credentials.grant(&file.tenant, name, credential, &value);
        }
        let tool: Arc<dyn Tool> = match (&b.command, &b.url) {
            (Some(command), None) => {
                let Some((program, args)) = command.split_first() else {
                    return Err(at(span, "`command` is empty".into()));
                };
                let tool = SubprocessTool::new(program, args)
                    .pass_env(b.pass_env.clone())
                    .current_dir(dir);
                Arc::new(tool)
            }
            (None, Some(url)) => {
                let mut tool = HttpTool::new(url.clone()).map_err(|e| at(span.clone(), e))?;
                for h in &b.headers {
                    tool = tool
                        .credential_header(&h.header, &h.credential, &h.prefix)
                        .map_err(|e| at(span.clone(), e))?;
                }
                Arc::new(tool)
            }
            _ => {
                return Err(at(
                    span,
                    format!("tool `{name}` needs exactly one of `command` and `url`"),
                ));
            }
        };
        tools.push((name.clone(), tool));
    }

    let model = OpenAiModel::new(OpenAiConfig {
        base_url: m.endpoint.clone(),
        model: m.name.clone(),
        api_key,
        system: m.system.clone(),
        tools: specs,
        max_tokens: m.max_tokens.unwrap_or(512),
        stream: m.stream.unwrap_or(true),
        pricing,
    })
    .map_err(|e| at(model_span, e))?;
    let mut runtime = Runtime::new(Arc::new(model), m.entity.clone()).credentials(credentials);
    for (name, tool) in tools {
        runtime = runtime.tool(name, tool);
    }
    Ok(Agent {
        deployment: Arc::new(deployment),
        config: SessionConfig {
            id: String::new(),
            tenant: file.tenant,
            user: file.user,
            agent: file.agent,
            budget: file.budget,
            mode: file.mode,
        },
        runtime,
        prompt: file.prompt,
        tick_every: Duration::from_millis(file.tick_ms.unwrap_or(1000).max(1)),
    })
}

/// The `Model` entity's prices, which the reservation and settlement use.
fn pricing(deployment: &Deployment, model: &str) -> Result<Pricing, String> {
    let uid = kernel::uid("Model", model)?;
    let entity = deployment
        .cedar_entities()
        .get(&uid)
        .ok_or_else(|| format!("no `Model::\"{model}\"` entity in these packs"))?;
    let price = |attr: &str| match entity.attr(attr) {
        Some(Ok(EvalResult::Long(n))) => {
            u64::try_from(n).map_err(|_| format!("`{model}`.{attr} is negative"))
        }
        _ => Err(format!("`Model::\"{model}\"` has no Long `{attr}`")),
    };
    Ok(Pricing {
        input_price: price("input_price")?,
        output_price: price("output_price")?,
    })
}
