//! `/`, `/version`, `/status`, `/domain`.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::RASA_VERSION;
use super::query::admin_query;
use super::{ApiError, SharedState};
use std::sync::atomic::Ordering;

pub async fn root() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "Hello from Rasa: {RASA_VERSION} (Colloquy {})",
            env!("CARGO_PKG_VERSION")
        ),
    )
}

pub async fn version() -> impl IntoResponse {
    Json(
        json!({"version": RASA_VERSION, "minimum_compatible_version": RASA_VERSION, "colloquy_version": env!("CARGO_PKG_VERSION")}),
    )
}

/// 3.6's keys, the 0.x keys (`model_fingerprint`, `is_ready`), and the components' health.
pub async fn status(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    admin_query(&state, &headers, q.as_deref())?;
    let agent = state.agent();
    let conv = &state.conversations;
    let (store, locks) = tokio::join!(conv.store().health(), conv.locks().health());
    let broker = match conv.broker() {
        Some(b) => Some(b.health().await),
        None => None,
    };
    let c = &conv.counters;
    let body = json!({
        "model_file": agent.as_ref().map(|a| a.model_file.clone()),
        "model_id": agent.as_ref().map(|a| a.model_id.clone()),
        "num_active_training_jobs": 0,
        "model_fingerprint": agent.as_ref().map(|a| a.fingerprint.clone()),
        "is_ready": agent.is_some(),
        "tracker_store": {"type": conv.store().type_name, "health": store},
        "lock_store": {"type": conv.locks().type_name, "health": locks},
        "event_broker": conv.broker().map(|b| json!({"type": b.type_name, "health": broker})),
        "events": {
            "stored": c.events_stored.load(Ordering::Relaxed),
            "published": c.events_published.load(Ordering::Relaxed),
            "publish_failures": c.publish_failures.load(Ordering::Relaxed),
        },
    });
    Ok(Json(body).into_response())
}

pub async fn domain(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    admin_query(&state, &headers, q.as_deref())?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let domain = state.domain();
    if accept.ends_with("json") {
        Ok(Json(domain.to_json()).into_response())
    } else if accept.ends_with("yml") || accept.ends_with("yaml") {
        Ok((
            [(header::CONTENT_TYPE, "application/x-yaml")],
            domain.to_yaml(),
        )
            .into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "NotAcceptable",
            "Invalid Accept header. Domain can be provided as json (\"Accept: application/json\") oryml (\"Accept: application/x-yaml\"). Make sure you've set the appropriate Accept header.",
        ))
    }
}
