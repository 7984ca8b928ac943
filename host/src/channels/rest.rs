//! The REST channel (rasa-endpoints §8.2): `POST /webhooks/rest/webhook` with
//! `{"sender", "message", "metadata"?, "input_channel"?}` answers the bot's messages.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::dialogue::output::messages_json;
use crate::dialogue::UserMessage;
use crate::http::query::{json_body, Query};
use crate::http::{ApiError, SharedState};

pub async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// The router's route for the webhook. While the REST channel is on, `http::dispatch` answers
/// every POST to it ahead of the router, so this handler serves only to register the route
/// (its other methods get the router's 405 with `Allow: POST`).
pub async fn webhook(
    State(state): State<SharedState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    answer(&state, q.as_deref(), &body).await
}

/// `POST /webhooks/rest/webhook`, once its body is read: the route above, and
/// `http::dispatch`, which answers this path ahead of the router.
pub async fn answer(
    state: &SharedState,
    query: Option<&str>,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let q = Query::parse(query);
    let body = WebhookBody::parse(body)?;
    let text = match body.message {
        Some(Value::String(s)) => trimmed(s),
        None | Some(Value::Null) => {
            return Err(ApiError::bad_parameter(
                "The request body needs a 'message'.",
                "message",
                "body",
            ))
        }
        Some(other) => {
            return Err(ApiError::bad_parameter(
                format!("'message' must be a string, got {other}."),
                "message",
                "body",
            ))
        }
    };
    let sender = match body.sender {
        None | Some(Value::Null) => "default".to_string(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    };
    if sender.chars().count() > state.limits.max_conversation_id_len {
        return Err(ApiError::bad_parameter(
            "The sender id is too long.",
            "sender",
            "body",
        ));
    }
    let metadata = match body.metadata {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => {
            return Err(ApiError::bad_parameter(
                format!("'metadata' must be an object, got {other}."),
                "metadata",
                "body",
            ))
        }
    };
    let input_channel = match body.input_channel {
        None | Some(Value::Null) => "rest".to_string(),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(ApiError::bad_parameter(
                format!("'input_channel' must be a string, got {other}."),
                "input_channel",
                "body",
            ))
        }
    };
    let Some(agent) = state.agent() else {
        return Err(ApiError::conflict(
            "No model is loaded: the bot cannot answer yet.",
        ));
    };
    let msg = UserMessage {
        sender_id: sender,
        text: Some(text),
        input_channel: Some(input_channel),
        metadata,
        ..Default::default()
    };
    let out = state.processor.handle_message(state, agent, msg).await?;
    if q.flag("stream", false) {
        // One JSON message per line, as Rasa's REST channel streams them.
        let mut text = Vec::new();
        for m in &out.messages {
            m.write_json(&mut text).map_err(channel_error)?;
            text.push(b'\n');
        }
        return Ok(([(header::CONTENT_TYPE, "text/event-stream")], text).into_response());
    }
    let json = messages_json(&out.messages).map_err(channel_error)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

fn channel_error(e: serde_json::Error) -> ApiError {
    ApiError::internal("ChannelError", e.to_string())
}

/// The fields of a webhook body that Colloquy reads; others are ignored, as Rasa does.
#[derive(Debug, Default, serde::Deserialize)]
struct WebhookBody {
    #[serde(default)]
    sender: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    input_channel: Option<Value>,
}

impl WebhookBody {
    /// Reads the fields straight from the body (no map of the whole object, no copies);
    /// anything that does not read as an object this way (a non-object, invalid JSON, a key
    /// given twice) goes the general way, whose errors name what is wrong.
    fn parse(body: &Bytes) -> Result<WebhookBody, ApiError> {
        let object_like = body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{');
        if object_like {
            if let Ok(parsed) = serde_json::from_slice(body) {
                return Ok(parsed);
            }
        }
        match json_body(body)? {
            Value::Object(mut obj) => Ok(WebhookBody {
                sender: obj.remove("sender"),
                message: obj.remove("message"),
                metadata: obj.remove("metadata"),
                input_channel: obj.remove("input_channel"),
            }),
            _ => Err(ApiError::bad_parameter(
                "The request body must be a JSON object with 'sender' and 'message'.",
                "",
                "body",
            )),
        }
    }
}

/// `s` without surrounding whitespace, reusing its buffer when there is none.
fn trimmed(s: String) -> String {
    if s.trim().len() == s.len() {
        s
    } else {
        s.trim().to_string()
    }
}
