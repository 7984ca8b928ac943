//! `/model/parse`, `/model/predict` and their 0.x names `/parse`, `/predict`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::query::{json_body, Query};
use super::{ApiError, SharedState};
use crate::engine::Event;

async fn parse_text(state: &SharedState, text: &str) -> Result<Value, ApiError> {
    let agent = state.require_agent()?;
    let mut parsed = crate::dialogue::interpreter::parse(&agent.model, &agent.domain, text);
    agent.model.policies.apply_nlu_fallback(&mut parsed);
    Ok(parsed)
}

/// `POST /model/parse` `{"text", "message_id"?}`.
pub async fn parse(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    state.auth.check(&headers, q.get("token"), None)?;
    if let Some(mode) = q.get("emulation_mode") {
        return Err(ApiError::bad_parameter(
            format!("emulation_mode '{mode}' is not supported by Colloquy."),
            "emulation_mode",
            "query",
        ));
    }
    let body = json_body(&body)?;
    let Some(text) = body.get("text").and_then(Value::as_str) else {
        return Err(ApiError::bad_parameter("No text message defined in request body. Add text to request body ('text': 'your text')", "text", "body"));
    };
    let mut parsed = parse_text(&state, text).await?;
    if let (Some(o), Some(id)) = (parsed.as_object_mut(), body.get("message_id")) {
        o.insert("message_id".into(), id.clone());
    }
    Ok(Json(parsed).into_response())
}

/// `POST /parse` `{"q"}` (rasa_core 0.14).
pub async fn parse_legacy(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    state.auth.check(&headers, q.get("token"), None)?;
    let body = json_body(&body)?;
    let Some(text) = body
        .get("q")
        .or_else(|| body.get("text"))
        .and_then(Value::as_str)
    else {
        return Err(ApiError::bad_parameter(
            "No text message defined in request body ('q': 'your text').",
            "q",
            "body",
        ));
    };
    Ok(Json(parse_text(&state, text).await?).into_response())
}

fn events_body(body: &Bytes) -> Result<Vec<Event>, ApiError> {
    match json_body(body)? {
        Value::Array(items) => Ok(Event::list_from_json(&items)?),
        other => Err(ApiError::bad_parameter(
            format!("Supplied events are not valid: expected a list of events, got {other}."),
            "",
            "body",
        )),
    }
}

/// `POST /model/predict`: a prediction on a temporary tracker (`default`) built from the
/// posted events; scores in domain order, as 3.6 returns them.
pub async fn predict(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    state.auth.check(&headers, q.get("token"), None)?;
    let agent = state.require_agent()?;
    let events = events_body(&body)?;
    Ok(Json(super::dialogue::prediction_json(
        &agent, "default", &events, false,
    ))
    .into_response())
}

/// `POST /predict` (0.12+): the same, without `confidence`.
pub async fn predict_legacy(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    state.auth.check(&headers, q.get("token"), None)?;
    let agent = state.require_agent()?;
    let events = events_body(&body)?;
    let mut out = super::dialogue::prediction_json(&agent, "default", &events, false);
    if let Some(o) = out.as_object_mut() {
        o.remove("confidence");
    }
    Ok(Json(out).into_response())
}
