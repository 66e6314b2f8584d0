//! Reading a policy directory into a [`Deployment`]: the crate's only filesystem access, for
//! loading bundles. Sessions never call it.
//!
//! Layout: `ROOT/schema.cedarschema`, then for `base` and each named pack, in that order:
//! `*.cedar`, `entities.json`, `tools/*.json`, `counters.toml` (each optional, read in name order).

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::deployment::{Deployment, DeploymentBuilder};
use crate::error::LoadErrors;
use crate::source::Source;

/// Why a policy directory could not be loaded.
#[derive(Debug, Error, miette::Diagnostic)]
pub enum PackError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A pack name that is not a plain folder name (`../x`, `a/b`, empty): packs live directly
    /// under the policy folder, and a name must not reach outside it.
    #[error("`{name}` is not a pack name: use letters, digits, `_` and `-` only")]
    BadName {
        /// The name given.
        name: String,
    },
    /// The files were read but are not a valid bundle.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(#[from] LoadErrors),
}

/// Loads `root/schema.cedarschema`, the `base` pack and each of `packs`.
pub fn load_packs(root: &Path, packs: &[&str]) -> Result<Deployment, PackError> {
    builder_for(root, packs)?
        .build()
        .map_err(PackError::Invalid)
}

/// The builder [`load_packs`] uses, for callers that add tools or entities of their own.
pub fn builder_for(root: &Path, packs: &[&str]) -> Result<DeploymentBuilder, PackError> {
    let mut builder = Deployment::builder(read(&root.join("schema.cedarschema"))?);
    let mut dirs = vec!["base"];
    dirs.extend(packs.iter().copied().filter(|p| *p != "base"));
    for pack in dirs {
        if pack.is_empty()
            || !pack
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(PackError::BadName { name: pack.into() });
        }
        let dir = root.join(pack);
        if !dir.is_dir() {
            return Err(PackError::Io {
                path: dir,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such policy pack"),
            });
        }
        for path in files(&dir, "cedar")? {
            builder = builder.policies(read(&path)?);
        }
        let entities = dir.join("entities.json");
        if entities.is_file() {
            builder = builder.entities(read(&entities)?);
        }
        let tools = dir.join("tools");
        if tools.is_dir() {
            for path in files(&tools, "json")? {
                builder = builder.tools_json(read(&path)?);
            }
        }
        let counters = dir.join("counters.toml");
        if counters.is_file() {
            builder = builder.counters(read(&counters)?);
        }
    }
    Ok(builder)
}

/// The packs of a policy directory: every folder but `base`, sorted by name.
pub fn pack_names(root: &Path) -> Result<Vec<String>, PackError> {
    let entries = std::fs::read_dir(root).map_err(|source| PackError::Io {
        path: root.into(),
        source,
    })?;
    let mut packs = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && name != "base" {
            packs.push(name);
        }
    }
    packs.sort();
    Ok(packs)
}

/// A file as a [`Source`] named by its path.
pub fn read(path: &Path) -> Result<Source, PackError> {
    let text = std::fs::read_to_string(path).map_err(|source| PackError::Io {
        path: path.into(),
        source,
    })?;
    Ok(Source::new(path.display().to_string(), text))
}

fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, PackError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PackError::Io {
        path: dir.into(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| PackError::Io {
                path: dir.into(),
                source,
            })?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == ext) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}
