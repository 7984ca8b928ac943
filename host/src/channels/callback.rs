//! The callback channel (rasa-endpoints §8.4): `POST /webhooks/callback/webhook` answers
//! `success` after the turn; every bot message is POSTed as JSON to the configured URL.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::dialogue::output::ChannelMessage;
use crate::dialogue::UserMessage;
use crate::http::query::json_body;
use crate::http::{ApiError, SharedState};

/// Where the callback channel sends bot messages.
pub struct CallbackOutput {
    url: String,
    client: reqwest::Client,
    headers: Vec<(String, String)>,
    params: Vec<(String, String)>,
    basic_auth: Option<(String, Option<String>)>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl CallbackOutput {
    /// Credentials: `url` (required), `headers`, `token`/`token_name`, `basic_auth`, `params`.
    pub fn from_credentials(creds: &Value) -> Result<CallbackOutput, String> {
        let url = creds
            .get("url")
            .and_then(Value::as_str)
            .ok_or("`url` is required")?
            .to_string();
        let headers = creds
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| h.iter().map(|(k, v)| (k.clone(), text(v))).collect())
            .unwrap_or_default();
        let mut params: Vec<(String, String)> = creds
            .get("params")
            .and_then(Value::as_object)
            .map(|p| p.iter().map(|(k, v)| (k.clone(), text(v))).collect())
            .unwrap_or_default();
        if let Some(t) = creds.get("token").filter(|t| !t.is_null()) {
            params.push((
                creds
                    .get("token_name")
                    .and_then(Value::as_str)
                    .unwrap_or("token")
                    .to_string(),
                text(t),
            ));
        }
        let basic_auth = creds.get("basic_auth").and_then(Value::as_object).map(|b| {
            (
                b.get("username").map(text).unwrap_or_default(),
                b.get("password").map(text),
            )
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(CallbackOutput {
            url,
            client,
            headers,
            params,
            basic_auth,
        })
    }

    /// POSTs each message in order. HTTP error statuses are logged and ignored (as Rasa);
    /// a connection failure is returned.
    pub async fn send(&self, messages: &[ChannelMessage]) -> Result<(), String> {
        for m in messages {
            let mut req = self.client.post(&self.url).json(m);
            if !self.params.is_empty() {
                req = req.query(&self.params);
            }
            for (k, v) in &self.headers {
                req = req.header(k, v);
            }
            if let Some((u, p)) = &self.basic_auth {
                req = req.basic_auth(u, p.clone());
            }
            match req.send().await {
                Ok(r) if !r.status().is_success() => {
                    tracing::warn!(url = %crate::redact::url(&self.url), status = %r.status(), "callback answered an error")
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(format!(
                        "cannot deliver to the callback URL {}: {}",
                        crate::redact::url(&self.url),
                        crate::redact::transport_error(e)
                    ))
                }
            }
        }
        Ok(())
    }
}

pub async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub async fn webhook(State(state): State<SharedState>, body: Bytes) -> Result<Response, ApiError> {
    let body = json_body(&body)?;
    let text = body.get("message").and_then(Value::as_str).ok_or_else(|| {
        ApiError::bad_parameter("The request body needs a 'message'.", "message", "body")
    })?;
    let sender = body
        .get("sender")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let agent = state.require_agent()?;
    let msg = UserMessage {
        sender_id: sender,
        text: Some(text.trim().to_string()),
        input_channel: Some("callback".into()),
        ..Default::default()
    };
    let out = state.processor.handle_message(&state, agent, msg).await?;
    let Some(callback) = &state.channels.callback else {
        return Err(ApiError::internal(
            "ChannelError",
            "the callback channel has no URL configured",
        ));
    };
    callback
        .send(&out.messages)
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "ChannelError", e))?;
    Ok("success".into_response())
}
