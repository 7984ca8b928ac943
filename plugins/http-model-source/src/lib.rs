//! HTTP model source for Colloquy (`models:` section, `type: http`).
//!
//! Each [`fetch`](HttpModelSource::fetch) is one pull from a Rasa-style model server:
//! `GET <url>` with `If-None-Match: <current fingerprint>`; a `200` whose `ETag` differs from
//! the current fingerprint is streamed (size-limited) into a file with a generated name inside
//! the host's `dest_dir`; everything else leaves the current model in place. See README.md for
//! the configuration, the exact answers and the failure behaviour.
//!
//! The host owns the polling loop (it calls `fetch` again after `next_poll_ms`, with backoff
//! after an error) and verifies the archive before it replaces anything.

pub mod config;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use colloquy_plugin_api::{
    export_plugin,
    sdk::{ModelSourcePlugin, PluginContext},
    PluginError,
};
use reqwest::header::{CONTENT_LENGTH, ETAG, IF_NONE_MATCH};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

pub use config::ModelSourceConfig;

/// The HTTP model source.
pub struct HttpModelSource {
    config: ModelSourceConfig,
    client: Client,
    /// `url` without credentials or query, for messages.
    display_url: String,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    pulls: AtomicU64,
    failures: AtomicU64,
    downloads: AtomicU64,
    /// In a failure streak: the first failure is logged, the rest are not.
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// Distinguishes files created in the same nanosecond by the same process.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl HttpModelSource {
    /// Builds the client (no request is made here).
    pub fn new(config: ModelSourceConfig) -> Result<Self, PluginError> {
        let builder = Client::builder()
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(30)))
            .user_agent(concat!("colloquy-model-source/", env!("CARGO_PKG_VERSION")));
        let client =
            colloquy_plugin_http_common::client(builder, config.timeout, config.cafile.as_deref())?;
        Ok(HttpModelSource {
            display_url: config::redacted_url(&config.url),
            config,
            client,
            stats: Stats::default(),
        })
    }

    /// Parses the config JSON and builds the source.
    pub fn from_config_json(json: &str) -> Result<Self, PluginError> {
        Self::new(ModelSourceConfig::parse(json)?)
    }

    fn unchanged(&self) -> Value {
        json!({"status": "unchanged", "next_poll_ms": self.config.next_poll_ms()})
    }

    async fn pull(&self, request: &Value) -> Result<Value, PluginError> {
        let current = match request.get("current_fingerprint") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(PluginError::invalid_input(format!(
                    "`current_fingerprint` must be a string or null, got {other}"
                )))
            }
        };
        let dest_dir = request
            .get("dest_dir")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| PluginError::invalid_input("the request has no `dest_dir` string"))?;

        let mut query: Vec<(&str, &str)> = self
            .config
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(token) = &self.config.token {
            query.push((self.config.token_name.as_str(), token.as_str()));
        }
        let mut req = self.client.get(self.config.url.clone());
        if !query.is_empty() {
            req = req.query(&query);
        }
        if let Some(fp) = current.as_deref().filter(|f| !f.is_empty()) {
            req = req.header(IF_NONE_MATCH, fp);
        }
        if let Some(auth) = &self.config.basic_auth {
            req = req.basic_auth(&auth.username, auth.password.as_ref());
        }
        // Configured headers go last, so they override the ones above (as in Rasa).
        req = req.headers(self.config.headers.clone());

        let response = req.send().await.map_err(|e| self.request_error(e))?;
        let status = response.status();
        match status {
            StatusCode::OK => {}
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED => {
                tracing::debug!(url = %self.display_url, %status, "model server: no new model");
                return Ok(self.unchanged());
            }
            StatusCode::NOT_FOUND => {
                tracing::debug!(url = %self.display_url, "model server: no model (404), keeping the current one");
                return Ok(self.unchanged());
            }
            other => {
                return Err(PluginError::backend(format!(
                    "model server {} answered {other}",
                    self.display_url
                ))
                .with_details(json!({"status": other.as_u16()})));
            }
        }

        let Some(etag) = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(normalise_etag)
            .filter(|e| !e.is_empty())
        else {
            tracing::warn!(
                url = %self.display_url,
                "model server answered 200 without an ETag: the model is ignored (a model server must tag its models)"
            );
            return Ok(self.unchanged());
        };
        if current.as_deref().map(normalise_etag).as_deref() == Some(etag.as_str()) {
            tracing::debug!(url = %self.display_url, "model server answered 200 with the current ETag: not downloaded again");
            return Ok(self.unchanged());
        }
        if let Some(len) = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > self.config.max_size_bytes {
                return Err(self.too_large(Some(len)));
            }
        }

        let path = self.download(response, &dest_dir).await?;
        self.stats.downloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(url = %self.display_url, fingerprint = %etag, file = %path.display(), "downloaded a new model");
        Ok(json!({
            "status": "new",
            "path": path.to_string_lossy(),
            "fingerprint": etag,
            "next_poll_ms": self.config.next_poll_ms(),
        }))
    }

    /// Streams the body into `dest_dir/.model-<id>.part`, then renames it to
    /// `dest_dir/model-<id>.tar.gz`. The `filename` response header is not used.
    async fn download(
        &self,
        mut response: reqwest::Response,
        dest_dir: &Path,
    ) -> Result<PathBuf, PluginError> {
        tokio::fs::create_dir_all(dest_dir).await.map_err(|e| {
            PluginError::backend(format!("cannot create `{}`: {e}", dest_dir.display()))
        })?;
        let id = unique_id();
        let part = dest_dir.join(format!(".model-{id}.part"));
        let done = dest_dir.join(format!("model-{id}.tar.gz"));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .await
            .map_err(|e| {
                PluginError::backend(format!("cannot create `{}`: {e}", part.display()))
            })?;
        // Removes the partial file on every early return, and when the host drops this
        // future (its call timeout) in the middle of the download.
        let mut cleanup = RemoveOnDrop(Some(part.clone()));
        let write_error = |e: std::io::Error| {
            PluginError::backend(format!("cannot write `{}`: {e}", part.display()))
        };

        let mut written: u64 = 0;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.request_error(e))? {
            written += chunk.len() as u64;
            if written > self.config.max_size_bytes {
                return Err(self.too_large(None));
            }
            file.write_all(&chunk).await.map_err(write_error)?;
        }
        file.flush().await.map_err(write_error)?;
        file.sync_all().await.map_err(write_error)?;
        drop(file);
        tokio::fs::rename(&part, &done).await.map_err(|e| {
            PluginError::backend(format!(
                "cannot rename `{}` to `{}`: {e}",
                part.display(),
                done.display()
            ))
        })?;
        cleanup.0 = None;
        Ok(done)
    }

    fn too_large(&self, announced: Option<u64>) -> PluginError {
        let limit = self.config.max_size_bytes;
        let text = match announced {
            Some(len) => format!(
                "the model from {} is {len} bytes, more than max_size_bytes ({limit})",
                self.display_url
            ),
            None => format!(
                "the model from {} exceeds max_size_bytes ({limit}); download aborted",
                self.display_url
            ),
        };
        PluginError::backend(text).with_details(json!({"max_size_bytes": limit}))
    }

    /// A transport error, without the URL (its query may hold the token).
    fn request_error(&self, e: reqwest::Error) -> PluginError {
        let timed_out = e.is_timeout();
        let connect = e.is_connect();
        let e = e.without_url();
        let text = format!(
            "model server {}: {}",
            self.display_url,
            colloquy_plugin_api::sdk::error_chain(&e)
        );
        if timed_out {
            PluginError::timeout(text)
        } else if connect {
            PluginError::connection(text)
        } else {
            PluginError::backend(text)
        }
    }

    fn record(&self, outcome: &Result<Value, PluginError>) {
        self.stats.pulls.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(_) => {
                if self.stats.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(url = %self.display_url, "model server reachable again");
                }
                *self
                    .stats
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(e) if e.kind == colloquy_plugin_api::ErrorKind::INVALID_INPUT => {}
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                if !self.stats.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!("model pull failed (logged once until it recovers): {e}");
                }
                *self
                    .stats
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e.message.to_string());
            }
        }
    }
}

impl ModelSourcePlugin for HttpModelSource {
    async fn fetch(&self, request: Value) -> Result<Value, PluginError> {
        let outcome = self.pull(&request).await;
        self.record(&outcome);
        outcome
    }

    async fn health(&self) -> Result<Value, PluginError> {
        let last_error = self
            .stats
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(json!({
            "ok": !self.stats.failing.load(Ordering::Relaxed),
            "pulls": self.stats.pulls.load(Ordering::Relaxed),
            "downloads": self.stats.downloads.load(Ordering::Relaxed),
            "failures": self.stats.failures.load(Ordering::Relaxed),
            "last_error": last_error,
        }))
    }
}

/// Deletes the file it names when dropped, unless disarmed (`.0 = None`).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The ETag as a fingerprint: surrounding whitespace, a weak `W/` prefix and the quotes
/// removed (`W/"abc"` → `abc`).
pub fn normalise_etag(etag: &str) -> String {
    let t = etag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    let t = t
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(t);
    t.to_string()
}

fn unique_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n}", std::process::id())
}

/// The constructor `export_plugin!` registers: parses the config and builds the client.
pub fn new_model_source(
    config: &str,
    _ctx: &PluginContext,
) -> Result<HttpModelSource, PluginError> {
    HttpModelSource::from_config_json(config)
}

export_plugin! {
    name: "http",
    version: env!("CARGO_PKG_VERSION"),
    model_source: new_model_source,
}

#[cfg(test)]
mod tests {
    use super::normalise_etag;

    #[test]
    fn etags_are_normalised() {
        assert_eq!(normalise_etag("\"abc\""), "abc");
        assert_eq!(normalise_etag("W/\"abc\""), "abc");
        assert_eq!(normalise_etag(" abc "), "abc");
        assert_eq!(normalise_etag("\"\""), "");
    }
}
