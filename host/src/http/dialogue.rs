//! `/conversations/{id}/messages|predict|execute|trigger_intent|respond`: the routes that run
//! the dialogue engine.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::conversations::Request;
use super::query::json_body;
use super::ApiError;
use crate::dialogue::UserMessage;
use crate::engine::{tracker_json, EventVerbosity};

fn body_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match json_body(body)? {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::bad_parameter(
            format!("The request body must be a JSON object, got {other}."),
            "",
            "body",
        )),
    }
}

fn opt_string(m: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::bad_parameter(
            format!("'{key}' must be a string, got {other}."),
            key,
            "body",
        )),
    }
}

/// `POST …/messages`: log a user message (parse, slots) without predicting.
pub(super) async fn messages(req: Request<'_>, body: Bytes) -> Result<Response, ApiError> {
    req.query.verbosity()?;
    let agent = req.state.require_agent()?;
    let m = body_object(&body)?;
    // 0.12+ prefers `message` over `text`.
    // Both are type-checked; `message` wins when both are given.
    let (message, text) = (opt_string(&m, "message")?, opt_string(&m, "text")?);
    let text = message.or(text);
    let Some(text) = text else {
        return Err(ApiError::bad_parameter(
            "The message must have a 'text'.",
            "text",
            "body",
        ));
    };
    let sender = opt_string(&m, "sender")?.unwrap_or_else(|| "user".into());
    if sender != "user" {
        return Err(ApiError::bad_parameter("Currently, only user messages can be passed to this endpoint. Messages of sender 'bot' cannot be handled.", "sender", "body"));
    }
    let parse_data = match m.get("parse_data") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => {
            // Checked as a stored `user` event's would be: what is stored must read back.
            if let Err(e) = crate::engine::event::check_parse_data(p) {
                return Err(ApiError::bad_parameter(
                    format!("Invalid 'parse_data': {e}."),
                    "parse_data",
                    "body",
                ));
            }
            let mut p = p.clone();
            p.entry("text").or_insert_with(|| json!(text));
            Some(p)
        }
        Some(other) => {
            return Err(ApiError::bad_parameter(
                format!("'parse_data' must be an object, got {other}."),
                "parse_data",
                "body",
            ))
        }
    };
    let msg = UserMessage {
        sender_id: req.id.into(),
        text: Some(text),
        parse_data,
        ..Default::default()
    };
    let out = req.state.processor.log_only(req.state, agent, msg).await?;
    req.tracker_of(out.log).await
}

/// `POST …/predict`: the policies' scores for the next action, nothing executed or stored.
pub(super) async fn predict(req: Request<'_>) -> Result<Response, ApiError> {
    let agent = req.state.require_agent()?;
    let Some(log) = req.state.conversations.read_with_texts(req.id).await? else {
        return Err(ApiError::conversation_not_found());
    };
    Ok(Json(prediction_json(
        &agent,
        req.id,
        &log.events(req.id)?,
        true,
        EventVerbosity::AfterRestart,
    ))
    .into_response())
}

/// The predict response: sorted scores (conversation route) or in domain order (`/model/predict`).
pub fn prediction_json(
    agent: &crate::agent::Agent,
    sender_id: &str,
    events: &[crate::engine::Event],
    sorted: bool,
    verbosity: EventVerbosity,
) -> Value {
    let state = crate::engine::TrackerState::compute(&agent.domain, events);
    let story: Vec<_> = state
        .applied
        .iter()
        .filter_map(|&i| crate::dialogue::story_event(&events[i]))
        .collect();
    let p = agent.model.policies.predict(&agent.domain, &story);
    let mut scores = p.scores(&agent.domain);
    if sorted {
        scores.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.0.cmp(&b.0))
        });
    }
    let mut tracker = tracker_json(sender_id, &agent.domain, events, verbosity);
    // A pending follow-up is consumed by this prediction.
    if let Some(t) = tracker.as_object_mut() {
        t.insert("followup_action".into(), Value::Null);
    }
    json!({
        "scores": scores.iter().map(|(a, s)| json!({"action": a, "score": s})).collect::<Vec<_>>(),
        "policy": p.policy,
        "confidence": p.confidence,
        "tracker": tracker,
    })
}

/// `POST …/execute` (deprecated in 3.6): run one action. Colloquy answers with the tracker
/// *after* the action (3.6 returns the one fetched before it).
pub(super) async fn execute(req: Request<'_>, body: Bytes) -> Result<Response, ApiError> {
    req.query.verbosity()?;
    let agent = req.state.require_agent()?;
    let m = body_object(&body)?;
    let name = match (opt_string(&m, "name")?, opt_string(&m, "action")?) {
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => {
            return Err(ApiError::bad_parameter(
                "Name of the action not provided in request body.",
                "name",
                "body",
            ))
        }
    };
    let policy = opt_string(&m, "policy")?;
    let confidence = match m.get("confidence") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_f64().ok_or_else(|| {
            ApiError::bad_parameter("'confidence' must be a number.", "confidence", "body")
        })?),
    };
    let out = req
        .state
        .processor
        .execute(req.state, agent, req.id, &name, policy, confidence)
        .await?;
    tracker_and_messages(&req, out).await
}

/// `{"tracker": …, "messages": […]}` after a turn: the tracker spliced from the log's texts
/// (the turn parsed only its own events; see `dialogue::Turn`).
async fn tracker_and_messages(
    req: &Request<'_>,
    out: crate::dialogue::TurnOutput,
) -> Result<Response, ApiError> {
    let tracker = req.tracker_bytes(out.log).await?;
    let messages = serde_json::to_vec(&out.messages)
        .map_err(|e| ApiError::internal("ConversationError", e.to_string()))?;
    let mut body = Vec::with_capacity(tracker.len() + messages.len() + 25);
    body.extend_from_slice(b"{\"tracker\":");
    body.extend_from_slice(&tracker);
    body.extend_from_slice(b",\"messages\":");
    body.extend_from_slice(&messages);
    body.push(b'}');
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `POST …/trigger_intent`: an external intent, then the prediction loop.
pub(super) async fn trigger_intent(req: Request<'_>, body: Bytes) -> Result<Response, ApiError> {
    req.query.verbosity()?; // a bad `include_events` is refused before anything runs
    let agent = req.state.require_agent()?;
    let m = body_object(&body)?;
    let Some(intent) = opt_string(&m, "name")? else {
        return Err(ApiError::bad_parameter(
            "Name of the intent not provided in request body.",
            "name",
            "body",
        ));
    };
    if agent.domain.intent(&intent).is_none() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "NotFound",
            format!("The intent '{intent}' does not exist in the domain."),
        ));
    }
    let entities = match m.get("entities") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        // The short-hand `{type: value}` becomes `[{"entity": type, "value": value}]`.
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| json!({"entity": k, "value": v}))
            .collect(),
        Some(other) => {
            return Err(ApiError::bad_parameter(
                format!("'entities' must be a list or an object, got {other}."),
                "entities",
                "body",
            ))
        }
    };
    let out = req
        .state
        .processor
        .trigger_intent(req.state, agent, req.id, &intent, entities)
        .await?;
    tracker_and_messages(&req, out).await
}

/// `GET|POST …/respond` (0.x): a message through the whole turn; the bot's messages.
pub(super) async fn respond(req: Request<'_>, body: Option<Bytes>) -> Result<Response, ApiError> {
    let agent = req.state.require_agent()?;
    let text = match &body {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => {
            let m = body_object(b)?;
            // `query` first; `q` only when there is no `query`.
            match opt_string(&m, "query")? {
                Some(t) => Some(t),
                None => opt_string(&m, "q")?,
            }
        }
        _ => req
            .query
            .get("query")
            .or_else(|| req.query.get("q"))
            .map(str::to_string),
    };
    let Some(text) = text else {
        return Err(ApiError::bad_parameter(
            "Missing the message parameter.",
            "query",
            "body",
        ));
    };
    let msg = UserMessage {
        sender_id: req.id.into(),
        text: Some(text),
        ..Default::default()
    };
    let out = req
        .state
        .processor
        .handle_message(req.state, agent, msg)
        .await?;
    Ok(Json(out.messages).into_response())
}
