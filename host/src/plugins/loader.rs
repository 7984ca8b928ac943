//! Loading `.so` plugins with abi_stable, and explaining refusals in one paragraph.

use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError};
use colloquy_plugin_api::{PluginModRef, CONTRACT_VERSION};
use thiserror::Error;

#[derive(Debug, Error, Clone)]
pub enum LoadError {
    #[error("{file}: not a Colloquy plugin (no abi_stable root module): {detail}")]
    NotAPlugin { file: PathBuf, detail: String },
    #[error(
        "{file}: built against plugin API {plugin_version}, but this host speaks plugin API {host_version}; \
         rebuild the plugin against colloquy-plugin-api {host_version}"
    )]
    VersionMismatch {
        file: PathBuf,
        plugin_version: String,
        host_version: String,
    },
    #[error("{file}: incompatible with this host's plugin API {host_version} (layout check failed: {summary}); rebuild the plugin against colloquy-plugin-api {host_version}")]
    Incompatible {
        file: PathBuf,
        host_version: String,
        summary: String,
    },
    #[error("{file}: cannot be loaded: {detail}")]
    Other { file: PathBuf, detail: String },
}

fn major_minor(v: &str) -> (&str, &str) {
    let mut parts = v.split('.');
    (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
}

/// Loads one library. Libraries are never unloaded (abi_stable does not support it).
pub fn load(file: &Path) -> Result<PluginModRef, LoadError> {
    let header = lib_header_from_path(file).map_err(|e| classify(file, e))?;
    // abi_stable accepts a plugin with a newer minor version than the host; we do not,
    // because the host owns the contract and a newer plugin may rely on what it lacks.
    let plugin_version = header.version_strings().version.to_string();
    if major_minor(&plugin_version) != major_minor(CONTRACT_VERSION) {
        return Err(LoadError::VersionMismatch {
            file: file.into(),
            plugin_version,
            host_version: CONTRACT_VERSION.into(),
        });
    }
    header
        .init_root_module::<PluginModRef>()
        .map_err(|e| classify(file, e))
}

fn classify(file: &Path, e: LibraryError) -> LoadError {
    match e {
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin {
            file: file.into(),
            detail: first_line(&e.to_string()),
        },
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::VersionMismatch {
            file: file.into(),
            plugin_version: actual_version.to_string(),
            host_version: expected_version.to_string(),
        },
        LibraryError::AbiInstability(_) => {
            let full = e.to_string();
            tracing::debug!(file = %file.display(), "abi_stable layout report:\n{full}");
            LoadError::Incompatible {
                file: file.into(),
                host_version: CONTRACT_VERSION.into(),
                summary: summarise_layout_errors(&full),
            }
        }
        other => {
            let full = other.to_string();
            tracing::debug!(file = %file.display(), "load error:\n{full}");
            LoadError::Other {
                file: file.into(),
                detail: first_line(&full),
            }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .chars()
        .take(300)
        .collect()
}

/// abi_stable's report is tens of KB; keep its `Error:` lines, deduplicated, at most five.
fn summarise_layout_errors(full: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for l in full
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Error:"))
    {
        let l: String = l.chars().take(160).collect();
        if !lines.contains(&l) {
            lines.push(l);
        }
        if lines.len() == 5 {
            break;
        }
    }
    if lines.is_empty() {
        first_line(full)
    } else {
        lines.join("; ")
    }
}
