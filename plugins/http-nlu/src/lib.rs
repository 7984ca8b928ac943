//! HTTP NLU connector for Colloquy (`nlu:` section, `type: http`).
//!
//! Parses each user message on a remote NLU server, speaking either the Rasa 3 protocol
//! (`POST {url}/model/parse`) or the rasa_core 0.x one (`GET {url}/parse?q=…`). A failing
//! server never fails the turn: the answer is Rasa's empty parse result, with a warning and a
//! failure counter in `health()`. See README.md.

pub mod config;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use colloquy_plugin_api::{
    export_plugin,
    sdk::{NluConnectorPlugin, PluginContext},
    PluginError,
};
use reqwest::{Client, StatusCode, Url};
use serde_json::{json, Map, Value};

pub use config::{NluConfig, Protocol};

/// The HTTP NLU connector.
pub struct HttpNlu {
    config: NluConfig,
    client: Client,
    /// `{url}/model/parse` (Rasa 3) or `{url}/parse` (rasa_core).
    endpoint: Url,
    /// `endpoint` without credentials or query, for messages.
    display_url: String,
    calls: AtomicU64,
    failures: AtomicU64,
    last_ok: AtomicBool,
}

/// Rasa's parse result for a message the NLU could not parse.
pub fn empty_parse_result(text: &str) -> Value {
    json!({
        "text": text,
        "intent": {"name": null, "confidence": 0.0},
        "entities": [],
        "intent_ranking": [],
    })
}

/// `base` + `/` + `sub`, with the base's trailing slashes removed (no `//`), its query kept.
pub fn join_url(base: &Url, sub: &str) -> Url {
    let mut url = base.clone();
    let path = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        sub.trim_start_matches('/')
    );
    url.set_path(&path);
    url
}

impl HttpNlu {
    /// Builds the client (no request is made here).
    pub fn new(config: NluConfig) -> Result<Self, PluginError> {
        let builder =
            Client::builder().user_agent(concat!("colloquy-nlu/", env!("CARGO_PKG_VERSION")));
        let client =
            colloquy_plugin_http_common::client(builder, config.timeout, config.cafile.as_deref())?;
        let endpoint = match config.protocol {
            Protocol::Rasa => join_url(&config.url, "model/parse"),
            Protocol::RasaCore => join_url(&config.url, "parse"),
        };
        Ok(HttpNlu {
            display_url: config::redacted_url(&endpoint),
            endpoint,
            config,
            client,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_ok: AtomicBool::new(true),
        })
    }

    /// Parses the config JSON and builds the connector.
    pub fn from_config_json(json: &str) -> Result<Self, PluginError> {
        Self::new(NluConfig::parse(json)?)
    }

    fn request(
        &self,
        text: &str,
        message_id: Option<&str>,
        model: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let token = self.config.token.as_deref();
        let mut query: Vec<(&str, &str)> = Vec::new();
        let req = match self.config.protocol {
            Protocol::Rasa => {
                // decisions §2: the token both as query parameter (what Rasa's server checks)
                // and in the body (what Rasa 3 sends).
                if let Some(t) = token {
                    query.push((self.config.token_name.as_str(), t));
                }
                let body = json!({"text": text, "message_id": message_id, "token": token});
                self.client
                    .post(self.endpoint.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string())
            }
            Protocol::RasaCore => {
                // rasa_core's order and rules: null values left out, the token always `token`,
                // `project/model` split like a path (`current` → project "").
                let (project, model) = match model {
                    Some(m) => match m.rsplit_once('/') {
                        Some((p, m)) => (Some(p), Some(m)),
                        None => (Some(""), Some(m)),
                    },
                    None => (None, None),
                };
                query.push(("q", text));
                for (k, v) in [
                    ("project", project),
                    ("model", model),
                    ("token", token),
                    ("message_id", message_id),
                ] {
                    if let Some(v) = v {
                        query.push((k, v));
                    }
                }
                self.client.get(self.endpoint.clone())
            }
        };
        query.extend(
            self.config
                .params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let mut req = if query.is_empty() {
            req
        } else {
            req.query(&query)
        };
        if let Some(auth) = &self.config.basic_auth {
            req = req.basic_auth(&auth.username, auth.password.as_ref());
        }
        // Configured headers last: they override the defaults above.
        req.headers(self.config.headers.clone())
    }

    async fn call_server(
        &self,
        text: &str,
        message_id: Option<&str>,
        model: Option<&str>,
    ) -> Result<Value, String> {
        let response = self
            .request(text, message_id, model)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        let body = response.bytes().await.map_err(describe)?;
        if status != StatusCode::OK {
            let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
            return Err(format!("answered {status}: {snippet}"));
        }
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| format!("answered invalid JSON: {e}"))?;
        let Value::Object(mut parsed) = value else {
            return Err(format!("answered JSON that is not an object: {value}"));
        };
        fill_defaults(&mut parsed, text);
        Ok(Value::Object(parsed))
    }
}

/// Adds the keys of Rasa's parse data a server left out; what it sent is kept as is.
fn fill_defaults(parsed: &mut Map<String, Value>, text: &str) {
    parsed
        .entry("text")
        .or_insert_with(|| Value::String(text.to_string()));
    parsed
        .entry("intent")
        .or_insert_with(|| json!({"name": null, "confidence": 0.0}));
    parsed.entry("entities").or_insert_with(|| json!([]));
    parsed.entry("intent_ranking").or_insert_with(|| json!([]));
}

/// A transport error's text, without the URL (its query may hold the token).
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "unreachable"
    } else {
        "failed"
    };
    format!(
        "{kind}: {}",
        colloquy_plugin_api::sdk::error_chain(&e.without_url())
    )
}

fn optional_str<'a>(request: &'a Value, key: &str) -> Result<Option<&'a str>, PluginError> {
    match request.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(PluginError::invalid_input(format!(
            "`{key}` must be a string or null, got {other}"
        ))),
    }
}

impl NluConnectorPlugin for HttpNlu {
    async fn parse(&self, request: Value) -> Result<Value, PluginError> {
        let text = match request.get("text") {
            Some(Value::String(s)) => s.as_str(),
            _ => {
                return Err(PluginError::invalid_input(
                    "the request has no `text` string",
                ))
            }
        };
        let message_id = optional_str(&request, "message_id")?;
        let sender_id = optional_str(&request, "sender_id")?;
        let model = optional_str(&request, "model")?
            .filter(|m| !m.is_empty())
            .or(self.config.model.as_deref());
        // Rasa 3 sends the sender id as `message_id`; rasa_core the message's own id.
        let id = match self.config.protocol {
            Protocol::Rasa => sender_id.or(message_id),
            Protocol::RasaCore => message_id.or(sender_id),
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        match self.call_server(text, id, model).await {
            Ok(parsed) => {
                self.last_ok.store(true, Ordering::Relaxed);
                Ok(parsed)
            }
            Err(reason) => {
                self.last_ok.store(false, Ordering::Relaxed);
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    url = %self.display_url,
                    failures,
                    "NLU server {reason}; the message gets an empty parse result"
                );
                Ok(empty_parse_result(text))
            }
        }
    }

    async fn health(&self) -> Result<Value, PluginError> {
        Ok(json!({
            "ok": self.last_ok.load(Ordering::Relaxed),
            "failures": self.failures.load(Ordering::Relaxed),
            "calls": self.calls.load(Ordering::Relaxed),
        }))
    }
}

/// The constructor `export_plugin!` registers: parses the config and builds the client.
pub fn new_nlu_connector(config: &str, _ctx: &PluginContext) -> Result<HttpNlu, PluginError> {
    HttpNlu::from_config_json(config)
}

export_plugin! {
    name: "http",
    version: env!("CARGO_PKG_VERSION"),
    nlu_connector: new_nlu_connector,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_slash_joined() {
        for (base, want) in [
            ("http://h:5005", "http://h:5005/model/parse"),
            ("http://h:5005/", "http://h:5005/model/parse"),
            ("http://h/nlu", "http://h/nlu/model/parse"),
            ("http://h/nlu//", "http://h/nlu/model/parse"),
            ("http://h/nlu/?x=1", "http://h/nlu/model/parse?x=1"),
        ] {
            let got = join_url(&Url::parse(base).unwrap(), "model/parse");
            assert_eq!(got.as_str(), want, "{base}");
        }
    }

    #[test]
    fn missing_keys_are_filled() {
        let mut m = Map::new();
        m.insert("intent".into(), json!({"name": "greet", "confidence": 0.9}));
        fill_defaults(&mut m, "hi");
        assert_eq!(
            Value::Object(m),
            json!({"intent": {"name": "greet", "confidence": 0.9}, "text": "hi", "entities": [], "intent_ranking": []})
        );
    }
}
