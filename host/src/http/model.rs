//! `/model/parse`, `/model/predict` and their 0.x names `/parse`, `/predict`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::query::{admin_query, json_body};
use super::{ApiError, SharedState};
use crate::engine::Event;

async fn parse_text(state: &SharedState, text: &str) -> Result<Value, ApiError> {
    let agent = state.require_agent()?;
    let parsed = crate::dialogue::interpreter::parse_with_connector(
        state.processor.nlu.as_ref(),
        &agent.model,
        &agent.domain,
        text,
        "default",
    )
    .await;
    Ok(parsed.into_value())
}

/// `POST /model/parse` `{"text", "message_id"?}`.
pub async fn parse(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let q = admin_query(&state, &headers, q.as_deref())?;
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
    admin_query(&state, &headers, q.as_deref())?;
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

fn events_body(state: &SharedState, body: &Bytes) -> Result<Vec<Event>, ApiError> {
    match json_body(body)? {
        Value::Array(items) if items.len() > state.limits.max_events_per_request => {
            Err(ApiError::bad_parameter(
                format!(
                    "Too many events in one request ({} > {}).",
                    items.len(),
                    state.limits.max_events_per_request
                ),
                "",
                "body",
            ))
        }
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
    let q = admin_query(&state, &headers, q.as_deref())?;
    let verbosity = q.verbosity()?;
    let agent = state.require_agent()?;
    let events = events_body(&state, &body)?;
    Ok(Json(super::dialogue::prediction_json(
        &agent, "default", &events, false, verbosity,
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
    admin_query(&state, &headers, q.as_deref())?;
    let agent = state.require_agent()?;
    let events = events_body(&state, &body)?;
    let mut out = super::dialogue::prediction_json(
        &agent,
        "default",
        &events,
        false,
        crate::engine::EventVerbosity::AfterRestart,
    );
    if let Some(o) = out.as_object_mut() {
        o.remove("confidence");
    }
    Ok(Json(out).into_response())
}

/// `PUT /model` `{"model_file"?, "model_server"?}`: load a model and swap it in (204).
pub async fn replace_model(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_query(&state, &headers, q.as_deref())?;
    let body = json_body(&body)?;
    let Some(obj) = body.as_object() else {
        return Err(ApiError::bad_parameter(
            "The request body must be a JSON object with 'model_file' or 'model_server'.",
            "",
            "body",
        ));
    };
    if obj.contains_key("remote_storage") && obj.get("remote_storage").is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::bad_parameter(
            "'remote_storage' is not supported by Colloquy; use a model source plugin.",
            "remote_storage",
            "body",
        ));
    }
    let model = if let Some(server) = obj.get("model_server").filter(|v| !v.is_null()) {
        let Some(cfg) = server.as_object().cloned() else {
            return Err(ApiError::bad_parameter(
                "'model_server' must be an object (an endpoint config with 'url').",
                "model_server",
                "body",
            ));
        };
        let kind = cfg
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("http")
            .to_string();
        let mut config = cfg.clone();
        config.remove("type");
        let component = crate::config::ComponentConfig {
            kind: Some(kind.clone()),
            config,
        };
        let source = {
            let mut registry = crate::plugins::Registry::new(&state.plugin_dirs);
            tokio::task::block_in_place(|| registry.model_source(&kind, &component)).map_err(
                |e| {
                    ApiError::bad_parameter(
                        format!("Agent with name '{kind}' could not be loaded: {e}"),
                        "model_server",
                        "body",
                    )
                },
            )?
        };
        let dest = crate::models::download_dir();
        let answer = source
            .fetch(&serde_json::json!({"current_fingerprint": null, "dest_dir": dest}))
            .await
            .map_err(|e| {
                ApiError::bad_parameter(
                    format!("The model could not be fetched from the model server: {e}"),
                    "model_server",
                    "body",
                )
            })?;
        let Some(path) = answer.get("path").and_then(Value::as_str) else {
            return Err(ApiError::bad_parameter(
                "The model server returned no model.",
                "model_server",
                "body",
            ));
        };
        crate::models::load(path.into()).await
    } else if let Some(file) = obj.get("model_file").and_then(Value::as_str) {
        let path = std::path::PathBuf::from(file);
        if !crate::models::is_loadable(&path) {
            return Err(ApiError::bad_parameter(
                format!("Agent with name '{file}' could not be loaded: no such model file."),
                "model_file",
                "body",
            ));
        }
        crate::models::load(path).await
    } else {
        return Err(ApiError::bad_parameter(
            "The request body needs 'model_file' or 'model_server'.",
            "",
            "body",
        ));
    };
    match model {
        Ok(m) => {
            crate::models::swap_in(&state, m);
            Ok(axum::http::StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => Err(ApiError::bad_parameter(
            format!("The model could not be loaded: {e}"),
            "model_file",
            "body",
        )),
    }
}

/// `DELETE /model`: stop serving the model (204); model routes answer 409 afterwards.
pub async fn unload_model(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    admin_query(&state, &headers, q.as_deref())?;
    crate::models::unload(&state);
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `POST /model` (0.x): a multipart upload, file field `model`, holding a model archive.
pub async fn upload_model(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    mut form: axum::extract::Multipart,
) -> Result<Response, ApiError> {
    admin_query(&state, &headers, q.as_deref())?;
    let mut archive = None;
    while let Some(field) = form.next_field().await.map_err(|e| {
        ApiError::bad_parameter(format!("Invalid multipart body: {e}"), "model", "body")
    })? {
        if field.name() == Some("model") {
            let name = field.file_name().unwrap_or("upload.tar.gz").to_string();
            let bytes = field.bytes().await.map_err(|e| {
                ApiError::bad_parameter(format!("Invalid multipart body: {e}"), "model", "body")
            })?;
            archive = Some((name, bytes.to_vec()));
        }
    }
    let Some((name, bytes)) = archive else {
        return Err(ApiError::bad_parameter(
            "You did not supply a model as part of your request (file field 'model').",
            "model",
            "body",
        ));
    };
    // The file name is only a label, never a path.
    let label = std::path::Path::new(&name)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let model = crate::models::load_bytes(bytes, label).await.map_err(|e| {
        ApiError::bad_parameter(
            format!("The model could not be loaded: {e}"),
            "model",
            "body",
        )
    })?;
    crate::models::swap_in(&state, model);
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `POST /model/train`: one YAML document (domain, config, data) → the archive, with its
/// name in the `filename` header; the new model is not loaded (3.6).
pub async fn train(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let q = admin_query(&state, &headers, q.as_deref())?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_parameter("The request body must be UTF-8 YAML.", "", "body"))?
        .to_string();
    if text.trim().is_empty() {
        return Err(ApiError::bad_parameter(
            "The request body must be a YAML document with domain, config and training data.",
            "",
            "body",
        ));
    }
    let save = q.flag("save_to_default_model_directory", true);
    let out_dir = if save {
        Some(std::path::PathBuf::from("models"))
    } else {
        None
    };
    let result = tokio::task::spawn_blocking(move || {
        crate::training::train_from_yaml_document(&text, out_dir.as_deref())
    })
    .await
    .map_err(|e| ApiError::internal("TrainingError", format!("training panicked: {e}")))?;
    match result {
        Ok((name, bytes)) => Ok((
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "application/gzip".to_string(),
                ),
                (axum::http::HeaderName::from_static("filename"), name),
            ],
            bytes,
        )
            .into_response()),
        Err(e) => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("The training data is invalid: {e}"),
        )),
    }
}
