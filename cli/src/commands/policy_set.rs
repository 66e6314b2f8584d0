//! `--policies DIR --pack P...`, shared by the commands that serve a policy set.

use std::path::PathBuf;

use runtime::service::PolicySource;

/// The policy directory and the packs loaded beside `base`.
#[derive(clap::Args)]
pub struct PolicyArgs {
    /// The policy directory.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// Packs loaded beside `base` (repeatable).
    #[arg(long = "pack")]
    pub packs: Vec<String>,
}

impl PolicyArgs {
    /// Where a service loads its policies from (no tools of its own beside the packs').
    pub fn source(&self) -> PolicySource {
        PolicySource {
            root: self.policies.clone(),
            packs: self.packs.clone(),
            tools: Vec::new(),
        }
    }
}
