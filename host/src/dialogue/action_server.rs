//! Custom actions on the user's unchanged `rasa_sdk` action server (rasa-endpoints §7).

use std::time::Duration;

use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::config::ComponentConfig;

#[derive(Debug, Error)]
pub enum ActionServerError {
    /// 400: the action refused to run (Rasa logs `action_execution_rejected` and predicts again).
    #[error("action '{action}' rejected execution: {message}")]
    Rejected { action: String, message: String },
    #[error("custom action '{action}' failed: {message}")]
    Failed { action: String, message: String },
    #[error("no action_endpoint is configured, so custom action '{0}' cannot run")]
    NotConfigured(String),
    #[error("action_endpoint: {0}")]
    Config(String),
}

/// What an action returned: its messages and events.
#[derive(Debug, Default)]
pub struct ActionResponse {
    pub events: Vec<Value>,
    pub responses: Vec<Map<String, Value>>,
}

pub struct ActionServer {
    url: String,
    client: reqwest::Client,
    headers: Vec<(String, String)>,
    basic_auth: Option<(String, Option<String>)>,
    params: Vec<(String, String)>,
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl ActionServer {
    /// From the `action_endpoint` section: `url`, `headers`, `basic_auth`, `token`/`token_name`,
    /// `params`, `timeout` (seconds, default 300 as in Rasa).
    pub fn from_config(cfg: &ComponentConfig) -> Result<ActionServer, ActionServerError> {
        let c = &cfg.config;
        let url = c
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| ActionServerError::Config("`url` is required".into()))?
            .to_string();
        let timeout = match c.get("timeout") {
            None | Some(Value::Null) => 300.0,
            Some(v) => as_text(v)
                .parse::<f64>()
                .ok()
                .filter(|t| *t > 0.0)
                .ok_or_else(|| {
                    ActionServerError::Config(
                        "`timeout` must be a positive number of seconds".into(),
                    )
                })?,
        };
        let headers = c
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| h.iter().map(|(k, v)| (k.clone(), as_text(v))).collect())
            .unwrap_or_default();
        let basic_auth = c.get("basic_auth").and_then(Value::as_object).map(|b| {
            (
                b.get("username").map(as_text).unwrap_or_default(),
                b.get("password").map(as_text),
            )
        });
        let mut params: Vec<(String, String)> = c
            .get("params")
            .and_then(Value::as_object)
            .map(|p| p.iter().map(|(k, v)| (k.clone(), as_text(v))).collect())
            .unwrap_or_default();
        if let Some(token) = c.get("token").filter(|t| !t.is_null()) {
            let name = c
                .get("token_name")
                .and_then(Value::as_str)
                .unwrap_or("token");
            params.push((name.to_string(), as_text(token)));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(timeout))
            .build()
            .map_err(|e| ActionServerError::Config(e.to_string()))?;
        Ok(ActionServer {
            url,
            client,
            headers,
            basic_auth,
            params,
        })
    }

    /// Runs `action` with the current tracker and domain.
    pub async fn run(
        &self,
        action: &str,
        sender_id: &str,
        tracker: Value,
        domain: Value,
    ) -> Result<ActionResponse, ActionServerError> {
        let body = json!({
            "next_action": action,
            "sender_id": sender_id,
            "tracker": tracker,
            "domain": domain,
            "version": crate::http::error::RASA_VERSION,
        });
        let mut req = self.client.post(&self.url).json(&body);
        if !self.params.is_empty() {
            req = req.query(&self.params);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some((user, pass)) = &self.basic_auth {
            req = req.basic_auth(user, pass.clone());
        }
        let failed = |message: String| ActionServerError::Failed {
            action: action.to_string(),
            message,
        };
        let resp = req.send().await.map_err(|e| {
            failed(format!(
                "cannot reach the action server at {}: {}",
                crate::redact::url(&self.url),
                crate::redact::transport_error(e)
            ))
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| {
            failed(format!(
                "reading the answer: {}",
                crate::redact::transport_error(e)
            ))
        })?;
        if status.as_u16() == 400 {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").map(as_text))
                .unwrap_or(text);
            return Err(ActionServerError::Rejected {
                action: action.to_string(),
                message,
            });
        }
        if !status.is_success() {
            return Err(failed(format!(
                "the action server answered {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| failed(format!("the answer is not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| failed("the answer is not a JSON object".into()))?;
        let events = match obj.get("events") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err(failed("`events` is not a list".into())),
        };
        let responses = match obj.get("responses") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|r| {
                    r.as_object()
                        .cloned()
                        .ok_or_else(|| failed("a response is not an object".into()))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(failed("`responses` is not a list".into())),
        };
        Ok(ActionResponse { events, responses })
    }
}
