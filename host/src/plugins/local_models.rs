//! `type: local`: the built-in model source behind `-m/--model` (and the seed's `-d`): a model
//! archive, or the newest archive of a directory.

use std::path::PathBuf;

use colloquy_plugin_api::sdk::{parse_config, ModelSourcePlugin};
use colloquy_plugin_api::PluginError;
use serde_json::{json, Value};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    path: PathBuf,
}

pub struct LocalModelSource {
    path: PathBuf,
}

impl LocalModelSource {
    pub fn from_config(config: &str) -> Result<LocalModelSource, PluginError> {
        let c: Config = parse_config(config)?;
        Ok(LocalModelSource { path: c.path })
    }
}

impl ModelSourcePlugin for LocalModelSource {
    async fn fetch(&self, request: Value) -> Result<Value, PluginError> {
        let file = if self.path.is_dir() {
            crate::model::archive::newest_archive(&self.path).ok_or_else(|| {
                PluginError::not_found(format!(
                    "no model archive (.tar.gz) in {}",
                    self.path.display()
                ))
            })?
        } else if self.path.is_file() {
            self.path.clone()
        } else {
            return Err(PluginError::not_found(format!(
                "{} does not exist",
                self.path.display()
            )));
        };
        let meta = crate::model::archive::read_metadata(&file)
            .map_err(|e| PluginError::invalid_input(e.to_string()))?;
        let current = request.get("current_fingerprint").and_then(Value::as_str);
        if current == Some(meta.fingerprint.as_str()) {
            return Ok(json!({"status": "unchanged", "next_poll_ms": null}));
        }
        Ok(
            json!({"status": "new", "path": file, "fingerprint": meta.fingerprint, "next_poll_ms": null}),
        )
    }
}
