//! Which plugins exist, and resolving `type:` to one of them (decisions §4).
//!
//! Lookup: built-ins first, then `.so` files in the search path: `--plugin-dir` (repeatable),
//! `COLLOQUY_PLUGIN_PATH`, `./plugins`, and the directory of the `colloquy` executable (so
//! `cargo build` output works as is). A `type:` that is a path loads that file directly.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use abi_stable::std_types::{RResult, RStr};
use colloquy_plugin_api::{PluginModRef, CONTRACT_VERSION};
use thiserror::Error;

use super::handles::*;
use super::host_api::host_api_for;
use super::loader::{self, LoadError};
use crate::config::ComponentConfig;

/// The five kinds of component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    TrackerStore,
    LockStore,
    EventBroker,
    NluConnector,
    ModelSource,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::TrackerStore,
        Kind::LockStore,
        Kind::EventBroker,
        Kind::NluConnector,
        Kind::ModelSource,
    ];

    /// The endpoints YAML section.
    pub fn section(self) -> &'static str {
        match self {
            Kind::TrackerStore => "tracker_store",
            Kind::LockStore => "lock_store",
            Kind::EventBroker => "event_broker",
            Kind::NluConnector => "nlu",
            Kind::ModelSource => "models",
        }
    }

    /// The CLI spelling (`--kind tracker-store`).
    pub fn cli_name(self) -> &'static str {
        match self {
            Kind::TrackerStore => "tracker-store",
            Kind::LockStore => "lock-store",
            Kind::EventBroker => "event-broker",
            Kind::NluConnector => "nlu-connector",
            Kind::ModelSource => "model-source",
        }
    }

    pub fn from_cli(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.cli_name() == s || k.section() == s)
    }

    fn provided_by(self, m: &PluginModRef) -> bool {
        match self {
            Kind::TrackerStore => m.new_tracker_store().is_some(),
            Kind::LockStore => m.new_lock_store().is_some(),
            Kind::EventBroker => m.new_event_broker().is_some(),
            Kind::NluConnector => m.new_nlu_connector().is_some(),
            Kind::ModelSource => m.new_model_source().is_some(),
        }
    }
}

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("{section}: unknown type \"{name}\"; available: {available}. Plugins were searched in: {searched}")]
    UnknownType {
        section: &'static str,
        name: String,
        available: String,
        searched: String,
    },
    #[error(
        "{section}: type \"{name}\" looks like a Python class path; Colloquy cannot load Python classes. \
         Use a built-in type ({available}), the name of a Colloquy plugin, or the path to a plugin `.so` file"
    )]
    PythonClass {
        section: &'static str,
        name: String,
        available: String,
    },
    #[error("{section}: type \"{name}\" is provided by several plugin files in one directory: {files}; remove all but one")]
    Duplicate {
        section: &'static str,
        name: String,
        files: String,
    },
    #[error("{section}: {0}", section = .1)]
    Load(LoadError, &'static str),
    #[error("{section}: plugin file {file} does not provide a {kind}")]
    KindNotProvided {
        section: &'static str,
        file: String,
        kind: &'static str,
    },
    #[error("{section}: type \"{name}\" could not be constructed: {message}")]
    Construct {
        section: &'static str,
        name: String,
        message: String,
    },
    #[error("{section}: `type` is required (Colloquy has no default {what}); e.g. `type: file` or `type: kafka`")]
    TypeRequired {
        section: &'static str,
        what: &'static str,
    },
}

/// One plugin: built in (no file) or loaded from a file.
#[derive(Clone)]
pub struct PluginEntry {
    pub name: String,
    pub version: String,
    pub file: Option<PathBuf>,
    pub module: PluginModRef,
}

impl PluginEntry {
    fn from_module(module: PluginModRef, file: Option<PathBuf>) -> PluginEntry {
        PluginEntry {
            name: (module.name())().to_string(),
            version: (module.plugin_version())().to_string(),
            file,
            module,
        }
    }
    pub fn kinds(&self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| k.provided_by(&self.module))
            .collect()
    }
}

pub struct Registry {
    builtins: Vec<PluginEntry>,
    found: Vec<PluginEntry>,
    rejected: Vec<LoadError>,
    search_dirs: Vec<PathBuf>,
    scanned: bool,
    /// Bound on every plugin call.
    pub call_timeout: Duration,
}

impl Registry {
    pub fn new(cli_dirs: &[PathBuf]) -> Registry {
        Registry {
            builtins: super::builtin::modules()
                .into_iter()
                .map(|m| PluginEntry::from_module(m, None))
                .collect(),
            found: Vec::new(),
            rejected: Vec::new(),
            search_dirs: search_dirs(cli_dirs),
            scanned: false,
            call_timeout: Duration::from_secs(30),
        }
    }

    pub fn search_dirs(&self) -> &[PathBuf] {
        &self.search_dirs
    }

    /// Loads every plugin library in the search path (once).
    pub fn scan(&mut self) {
        if self.scanned {
            return;
        }
        self.scanned = true;
        let mut seen = HashSet::new();
        for dir in self.search_dirs.clone() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| is_library(p))
                .collect();
            files.sort();
            for file in files {
                let canonical = file.canonicalize().unwrap_or_else(|_| file.clone());
                if !seen.insert(canonical) {
                    continue;
                }
                match loader::load(&file) {
                    Ok(module) => self
                        .found
                        .push(PluginEntry::from_module(module, Some(file))),
                    // Foreign libraries in a scanned directory are not worth a warning.
                    Err(LoadError::NotAPlugin { .. }) => {}
                    Err(e) => {
                        tracing::warn!("plugin rejected: {e}");
                        self.rejected.push(e);
                    }
                }
            }
        }
    }

    /// Built-ins, then the plugins found, with what was rejected.
    pub fn list(&mut self) -> (Vec<PluginEntry>, Vec<LoadError>) {
        self.scan();
        let mut all = self.builtins.clone();
        all.extend(self.found.iter().cloned());
        (all, self.rejected.clone())
    }

    fn available(&mut self, kind: Kind) -> String {
        let mut names: Vec<String> = self
            .builtins
            .iter()
            .filter(|e| kind.provided_by(&e.module))
            .map(|e| e.name.clone())
            .collect();
        if self.scanned {
            for e in &self.found {
                if kind.provided_by(&e.module) && !names.contains(&e.name) {
                    names.push(e.name.clone());
                }
            }
        }
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// Finds the plugin for `type_name` providing `kind`.
    pub fn resolve(&mut self, kind: Kind, type_name: &str) -> Result<PluginEntry, RegistryError> {
        let section = kind.section();
        if type_name.ends_with(".so") || type_name.contains('/') {
            let file = PathBuf::from(type_name);
            let module = loader::load(&file).map_err(|e| RegistryError::Load(e, section))?;
            let entry = PluginEntry::from_module(module, Some(file));
            if !kind.provided_by(&entry.module) {
                return Err(RegistryError::KindNotProvided {
                    section,
                    file: type_name.into(),
                    kind: kind.cli_name(),
                });
            }
            return Ok(entry);
        }
        let wanted = type_name.to_ascii_lowercase();
        if let Some(b) = self
            .builtins
            .iter()
            .find(|e| e.name == wanted && kind.provided_by(&e.module))
        {
            return Ok(b.clone());
        }
        if type_name.contains('.') {
            let available = self.available(kind);
            return Err(RegistryError::PythonClass {
                section,
                name: type_name.into(),
                available,
            });
        }
        self.scan();
        let matches: Vec<&PluginEntry> = self
            .found
            .iter()
            .filter(|e| e.name.eq_ignore_ascii_case(type_name) && kind.provided_by(&e.module))
            .collect();
        // Like PATH: the first directory in the search order wins; two files with the same
        // name in that one directory are ambiguous.
        let dir_of = |e: &PluginEntry| {
            e.file
                .as_ref()
                .and_then(|f| f.parent().map(Path::to_path_buf))
        };
        match matches.first() {
            None => {
                let mut available = self.available(kind);
                if !self.rejected.is_empty() {
                    let why: Vec<String> = self.rejected.iter().map(|r| r.to_string()).collect();
                    available.push_str(&format!(" (rejected: {})", why.join(" | ")));
                }
                let searched = self
                    .search_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(RegistryError::UnknownType {
                    section,
                    name: type_name.into(),
                    available,
                    searched,
                })
            }
            Some(first) => {
                let same_dir: Vec<&&PluginEntry> = matches
                    .iter()
                    .filter(|e| dir_of(e) == dir_of(first))
                    .collect();
                if same_dir.len() > 1 {
                    return Err(RegistryError::Duplicate {
                        section,
                        name: type_name.into(),
                        files: same_dir
                            .iter()
                            .filter_map(|e| e.file.as_ref())
                            .map(|f| f.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                for shadowed in &matches[1..] {
                    if let (Some(f), Some(w)) = (&shadowed.file, &first.file) {
                        tracing::warn!(
                            "{section}: plugin \"{type_name}\" in {} is shadowed by {}",
                            f.display(),
                            w.display()
                        );
                    }
                }
                Ok((*first).clone())
            }
        }
    }

    fn config_json(cfg: &ComponentConfig) -> String {
        serde_json::Value::Object(cfg.config.clone()).to_string()
    }

    pub fn tracker_store(
        &mut self,
        cfg: Option<&ComponentConfig>,
    ) -> Result<TrackerStoreHandle, RegistryError> {
        let type_name = cfg
            .and_then(|c| c.kind.clone())
            .unwrap_or_else(|| "in_memory".into());
        let entry = self.resolve(Kind::TrackerStore, &type_name)?;
        let ctor = entry
            .module
            .new_tracker_store()
            .expect("checked by resolve");
        let json = cfg.map(Self::config_json).unwrap_or_else(|| "{}".into());
        let boxed = constructed(
            Kind::TrackerStore,
            &type_name,
            ctor(RStr::from_str(&json), host_api_for(&entry.name)),
        )?;
        Ok(TrackerStoreHandle::new(
            &type_name,
            boxed,
            self.call_timeout,
        ))
    }

    pub fn lock_store(
        &mut self,
        cfg: Option<&ComponentConfig>,
    ) -> Result<LockStoreHandle, RegistryError> {
        let type_name = cfg
            .and_then(|c| c.kind.clone())
            .unwrap_or_else(|| "in_memory".into());
        let entry = self.resolve(Kind::LockStore, &type_name)?;
        let ctor = entry.module.new_lock_store().expect("checked by resolve");
        let json = cfg.map(Self::config_json).unwrap_or_else(|| "{}".into());
        let boxed = constructed(
            Kind::LockStore,
            &type_name,
            ctor(RStr::from_str(&json), host_api_for(&entry.name)),
        )?;
        Ok(LockStoreHandle::new(&type_name, boxed, self.call_timeout))
    }

    pub fn event_broker(&mut self, cfg: &ComponentConfig) -> Result<BrokerHandle, RegistryError> {
        let Some(type_name) = cfg.kind.clone() else {
            return Err(RegistryError::TypeRequired {
                section: Kind::EventBroker.section(),
                what: "event broker",
            });
        };
        let entry = self.resolve(Kind::EventBroker, &type_name)?;
        let ctor = entry.module.new_event_broker().expect("checked by resolve");
        let boxed = constructed(
            Kind::EventBroker,
            &type_name,
            ctor(
                RStr::from_str(&Self::config_json(cfg)),
                host_api_for(&entry.name),
            ),
        )?;
        Ok(BrokerHandle::new(&type_name, boxed, self.call_timeout))
    }

    pub fn nlu_connector(
        &mut self,
        type_name: &str,
        cfg: &ComponentConfig,
    ) -> Result<NluHandle, RegistryError> {
        let entry = self.resolve(Kind::NluConnector, type_name)?;
        let ctor = entry
            .module
            .new_nlu_connector()
            .expect("checked by resolve");
        let boxed = constructed(
            Kind::NluConnector,
            type_name,
            ctor(
                RStr::from_str(&Self::config_json(cfg)),
                host_api_for(&entry.name),
            ),
        )?;
        Ok(NluHandle::new(type_name, boxed, self.call_timeout))
    }

    pub fn model_source(
        &mut self,
        type_name: &str,
        cfg: &ComponentConfig,
    ) -> Result<ModelSourceHandle, RegistryError> {
        let entry = self.resolve(Kind::ModelSource, type_name)?;
        let ctor = entry.module.new_model_source().expect("checked by resolve");
        let boxed = constructed(
            Kind::ModelSource,
            type_name,
            ctor(
                RStr::from_str(&Self::config_json(cfg)),
                host_api_for(&entry.name),
            ),
        )?;
        // Downloads may take minutes (a model server allows 300 s by default).
        Ok(ModelSourceHandle::new(
            type_name,
            boxed,
            self.call_timeout.max(std::time::Duration::from_secs(600)),
        ))
    }
}

fn constructed<T>(
    kind: Kind,
    type_name: &str,
    r: RResult<T, colloquy_plugin_api::PluginError>,
) -> Result<T, RegistryError> {
    match r {
        RResult::ROk(v) => Ok(v),
        RResult::RErr(e) => Err(RegistryError::Construct {
            section: kind.section(),
            name: type_name.into(),
            message: e.message.to_string(),
        }),
    }
}

fn is_library(p: &Path) -> bool {
    p.is_file() && p.extension().is_some_and(|e| e == "so" || e == "dylib")
}

/// The plugin search path, in order.
pub fn search_dirs(cli_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = cli_dirs.to_vec();
    if let Ok(path) = std::env::var("COLLOQUY_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&path).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.push(PathBuf::from("plugins"));
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    dirs
}

/// One line per plugin, for `colloquy plugins`.
pub fn describe(entries: &[PluginEntry], rejected: &[LoadError]) -> String {
    let mut out = format!("plugin API {CONTRACT_VERSION}\n");
    for e in entries {
        let kinds: Vec<&str> = e.kinds().iter().map(|k| k.cli_name()).collect();
        let origin = e
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "built in".into());
        out.push_str(&format!(
            "{:<20} {:<10} {:<40} {}\n",
            e.name,
            e.version,
            kinds.join(","),
            origin
        ));
    }
    for r in rejected {
        out.push_str(&format!("rejected: {r}\n"));
    }
    out
}
