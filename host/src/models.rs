//! Which model serves: loading, atomic hot swap, and polling a model source.
//!
//! A new model loads off the request path and replaces the old one in a single pointer swap;
//! requests in flight keep the `Arc` of the model they started with, so none fails during a
//! swap. A model that fails to load leaves the current one serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::agent::Agent;
use crate::http::AppState;
use crate::model::{Model, ModelError};
use crate::plugins::ModelSourceHandle;

/// Loads an archive (file, or newest in a directory) without blocking the async workers.
pub async fn load(path: PathBuf) -> Result<Model, ModelError> {
    match tokio::task::spawn_blocking(move || Model::load(&path)).await {
        Ok(r) => r,
        Err(e) => Err(ModelError::Invalid(format!("loading panicked: {e}"))),
    }
}

/// Loads an archive held in memory (an upload).
pub async fn load_bytes(bytes: Vec<u8>, name: String) -> Result<Model, ModelError> {
    match tokio::task::spawn_blocking(move || Model::from_bytes(&bytes, &name)).await {
        Ok(r) => r,
        Err(e) => Err(ModelError::Invalid(format!("loading panicked: {e}"))),
    }
}

/// Makes `model` the one serving.
pub fn swap_in(state: &AppState, model: Model) {
    let agent = Arc::new(Agent::new(model));
    tracing::info!(model = %agent.model_file, model_id = %agent.model_id, fingerprint = %agent.fingerprint, "model now serving");
    *state.agent.write().unwrap_or_else(|p| p.into_inner()) = Some(agent);
}

/// Stops serving any model (`DELETE /model`).
pub fn unload(state: &AppState) {
    *state.agent.write().unwrap_or_else(|p| p.into_inner()) = None;
}

/// Polls `source` for new models until the process ends: the first pull right away, then
/// every `next_poll_ms` the source asks for (none: pull once). Errors retry with backoff
/// and are logged once per streak.
pub fn spawn_polling(state: Arc<AppState>, source: ModelSourceHandle, dest_dir: PathBuf) {
    tokio::spawn(async move {
        let mut failures = 0u32;
        // The source's own version tag (an ETag) of the model it gave us, and that model's id:
        // the tag is what the source compares, as long as that model is still the one serving.
        let mut served: Option<(String, String, PathBuf)> = None;
        loop {
            let agent = state.agent();
            let current = match (&served, &agent) {
                (Some((tag, id, _)), Some(a)) if *id == a.model_id => Some(tag.clone()),
                _ => agent.map(|a| a.fingerprint.clone()),
            };
            let request = json!({"current_fingerprint": current, "dest_dir": dest_dir});
            let next: Option<Duration>;
            match source.fetch(&request).await {
                Ok(answer) => {
                    if failures > 0 {
                        tracing::info!(
                            "model source reachable again after {failures} failed pulls"
                        );
                    }
                    failures = 0;
                    next = answer
                        .get("next_poll_ms")
                        .and_then(Value::as_u64)
                        .map(Duration::from_millis);
                    if answer.get("status").and_then(Value::as_str) == Some("new") {
                        if let Some(path) = answer.get("path").and_then(Value::as_str) {
                            let path = PathBuf::from(path);
                            match load(path.clone()).await {
                                Ok(model) => {
                                    let tag = answer
                                        .get("fingerprint")
                                        .and_then(Value::as_str)
                                        .unwrap_or(&model.fingerprint)
                                        .to_string();
                                    let id = model.id.clone();
                                    swap_in(&state, model);
                                    // The previous download is no longer needed.
                                    if let Some((_, _, old)) =
                                        served.replace((tag, id, path.clone()))
                                    {
                                        if old != path && old.starts_with(&dest_dir) {
                                            let _ = std::fs::remove_file(old);
                                        }
                                    }
                                }
                                Err(e) => {
                                    tracing::error!(file = %path.display(), "the model from the model source cannot be loaded, the current one keeps serving: {e}");
                                    if path.starts_with(&dest_dir) {
                                        let _ = std::fs::remove_file(&path);
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::error!("model source: {e}; retrying with backoff");
                    }
                    let backoff = Duration::from_secs(1u64 << failures.min(6));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
            match next {
                Some(d) if !d.is_zero() => tokio::time::sleep(d).await,
                _ => break,
            }
        }
    });
}

/// Where downloaded models go: a fresh directory under the system temp dir.
pub fn download_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("colloquy-models-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// True when `path` names an existing archive or a directory holding one.
pub fn is_loadable(path: &Path) -> bool {
    path.is_file() || (path.is_dir() && crate::model::archive::newest_archive(path).is_some())
}
