//! `type: file`: every event as one JSON line (`{"sender_id": …, <event>}`) in a file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use colloquy_plugin_api::sdk::{parse_config, EventBrokerPlugin};
use colloquy_plugin_api::PluginError;
use serde_json::json;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_path")]
    path: PathBuf,
}

fn default_path() -> PathBuf {
    PathBuf::from("rasa_event.log")
}

pub struct FileBroker {
    path: PathBuf,
    file: Mutex<File>,
    written: AtomicU64,
    failed: AtomicU64,
}

impl FileBroker {
    pub fn from_config(config: &str) -> Result<FileBroker, PluginError> {
        let config: Config = parse_config(config)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(|e| {
                PluginError::config(format!(
                    "cannot open event log {}: {e}",
                    config.path.display()
                ))
            })?;
        Ok(FileBroker {
            path: config.path,
            file: Mutex::new(file),
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }
}

impl EventBrokerPlugin for FileBroker {
    async fn publish(
        &self,
        conversation_id: String,
        events: Vec<String>,
    ) -> Result<(), PluginError> {
        let mut lines = String::new();
        for e in &events {
            let line = super::rasa_message(&conversation_id, e).map_err(|err| {
                PluginError::invalid_input(format!("event is not a JSON object: {err}"))
            })?;
            lines.push_str(&line);
            lines.push('\n');
        }
        // One write per batch keeps a batch's lines together; the file is opened in append mode.
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        match file.write_all(lines.as_bytes()).and_then(|_| file.flush()) {
            Ok(()) => {
                self.written
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.failed
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                Err(PluginError::backend(format!(
                    "cannot write to {}: {e}",
                    self.path.display()
                )))
            }
        }
    }

    async fn flush(&self, _timeout_ms: u64) -> Result<(), PluginError> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.sync_data()
            .map_err(|e| PluginError::backend(format!("cannot sync {}: {e}", self.path.display())))
    }

    async fn health(&self) -> Result<serde_json::Value, PluginError> {
        Ok(
            json!({"ok": true, "path": self.path, "delivered": self.written.load(Ordering::Relaxed), "failed": self.failed.load(Ordering::Relaxed)}),
        )
    }
}
