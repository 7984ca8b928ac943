//! `/conversations/…`: trackers, events and stories.
//!
//! Conversation ids may contain `/` (3.6 uses a path converter), so everything under
//! `/conversations/` comes here ([`dispatch`], called by `super::dispatch` ahead of the axum
//! router) and the known suffixes are split off.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::query::{admin_query, json_body, Query};
use super::{ApiError, SharedState};
use crate::conversations::{ConversationError, Log, Write};
use crate::engine::event::FlatObject;
use crate::engine::story::story_yaml;
use crate::engine::tracker::{session_start_events, starts_with_session_start, truncate_until};
use crate::engine::{tracker_json, Event, EventVerbosity};

pub(crate) const SUFFIXES: [&str; 8] = [
    "/tracker/events",
    "/tracker",
    "/story",
    "/messages",
    "/predict",
    "/execute",
    "/trigger_intent",
    "/respond",
];

/// Splits `<id><suffix>` into the id and the suffix.
fn split(rest: &str) -> Option<(&str, &'static str)> {
    SUFFIXES.iter().find_map(|s| {
        rest.strip_suffix(s)
            .filter(|id| !id.is_empty())
            .map(|id| (id, *s))
    })
}

/// The methods a conversation route answers (the `Allow` header of a 405).
fn allowed(suffix: &str) -> &'static str {
    match suffix {
        "/tracker" | "/story" => "GET,HEAD",
        "/tracker/events" => "POST,PUT",
        "/respond" => "GET,HEAD,POST",
        _ => "POST",
    }
}

/// A known conversation route with another method: 405 with `Allow`; anything else: 404.
fn route_not_found(method: &str, rest: &str) -> Response {
    match split(rest) {
        Some((_, suffix)) => {
            let mut r = ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("Method {method} not allowed for URL /conversations/{rest}"),
            )
            .into_response();
            r.headers_mut().insert(
                header::ALLOW,
                axum::http::HeaderValue::from_static(allowed(suffix)),
            );
            r
        }
        None => ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "NotFound",
            format!("Requested URL {method} /conversations/{rest} not found"),
        )
        .into_response(),
    }
}

/// Where every request under `/conversations/` is answered (`super::dispatch` sends them here,
/// ahead of the router). The rest of the path is percent-decoded as one conversation id plus
/// a known suffix. As axum's extractors did before: the body of a POST or PUT is read (within
/// `--max-body-bytes`) before anything else is checked, a HEAD is answered as a GET without
/// its body, and other methods get 405 on a known route, 404 otherwise.
pub async fn dispatch(state: SharedState, request: axum::http::Request<Body>) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(encoded) = parts.uri.path().strip_prefix("/conversations/") else {
        return super::not_found(&parts.method, &parts.uri).into_response();
    };
    let Ok(rest) = percent_encoding::percent_decode_str(encoded).decode_utf8() else {
        return ApiError::bad_request("Invalid UTF-8 in `conversation_id`").into_response();
    };
    let headers = std::mem::take(&mut parts.headers);
    let query = parts.uri.query();
    let answer = match parts.method {
        Method::GET => get_route(&state, &rest, &headers, query).await,
        Method::HEAD => {
            let answer = get_route(&state, &rest, &headers, query).await;
            return without_body(answer.into_response());
        }
        Method::POST | Method::PUT => {
            match super::body::read(body, state.limits.max_body_bytes).await {
                Ok(body) if parts.method == Method::POST => {
                    post_route(&state, &rest, &headers, query, body).await
                }
                Ok(body) => put_route(&state, &rest, &headers, query, body).await,
                Err(e) => Err(e),
            }
        }
        ref other => Ok(route_not_found(other.as_str(), &rest)),
    };
    answer.into_response()
}

/// A HEAD answer: the GET's status and headers, its length, no body.
fn without_body(mut response: Response) -> Response {
    use http_body::Body as _;
    if let Some(length) = response.body().size_hint().exact() {
        response
            .headers_mut()
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| length.into());
    }
    *response.body_mut() = Body::empty();
    response
}

pub(super) struct Request<'a> {
    pub(super) state: &'a SharedState,
    pub(super) id: &'a str,
    pub(super) query: Query<'a>,
}

impl<'a> Request<'a> {
    fn new(
        state: &'a SharedState,
        id: &'a str,
        headers: &HeaderMap,
        raw: Option<&'a str>,
    ) -> Result<Request<'a>, ApiError> {
        let query = Query::parse(raw);
        state.auth.check(headers, query.get("token"), Some(id))?;
        if id.chars().count() > state.limits.max_conversation_id_len {
            return Err(ApiError::bad_parameter(
                format!(
                    "The conversation ID is longer than {} characters.",
                    state.limits.max_conversation_id_len
                ),
                "conversation_id",
                "path",
            ));
        }
        Ok(Request { state, id, query })
    }

    /// Stamps events as 3.6 does when a model is loaded.
    fn stamp(&self, events: &mut [Event]) {
        if let Some(agent) = self.state.agent() {
            for e in events {
                e.stamp(&agent.stamp);
            }
        }
    }

    /// The log to answer a tracker from, this request holding no lock. When the answer lists
    /// events whose texts the store keeps and another writer rewrote the conversation since
    /// the log was read or written, that version is gone: the current one is answered, as a
    /// GET would answer it now.
    async fn answerable(&self, log: Log) -> Result<Log, ApiError> {
        if self.query.verbosity()? == EventVerbosity::None {
            return Ok(log);
        }
        match log.texts.get() {
            Err(ConversationError::Changed { .. }) => Ok(self
                .state
                .conversations
                .read_with_texts(self.id)
                .await?
                .unwrap_or(log)),
            _ => Ok(log),
        }
    }

    /// The tracker of a stored log, its state extended from the previous request's.
    pub(super) async fn tracker_of(&self, log: Log) -> Result<Response, ApiError> {
        let body = self.tracker_bytes(log).await?;
        Ok((
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response())
    }

    /// The tracker JSON of a stored log (the query's verbosity): its events' texts spliced,
    /// the rest from the state remembered with it (extended by the events it has not seen).
    /// Called without the conversation's lock (see [`Self::answerable`]).
    pub(super) async fn tracker_bytes(&self, log: Log) -> Result<Vec<u8>, ApiError> {
        let log = self.answerable(log).await?;
        match self.tracker_bytes_of(&log) {
            // A tracker that lists no events may still fetch one text from the store (its
            // latest message, when the remembered state has not written it yet), and only then
            // find that the version it was given was rewritten (`answerable` checks the
            // others up front). The current version is answered, as a GET would answer it now.
            Err(e) if matches!(log.texts.get(), Err(ConversationError::Changed { .. })) => {
                match self.state.conversations.read_with_texts(self.id).await? {
                    Some(current) => self.tracker_bytes_of(&current),
                    None => Err(e),
                }
            }
            answer => answer,
        }
    }

    fn tracker_bytes_of(&self, log: &Log) -> Result<Vec<u8>, ApiError> {
        let verbosity = self.query.verbosity()?;
        let domain = self.state.domain();
        let warm = self.state.states.take_for_log(self.id, &domain, log)?;
        let view = crate::engine::tracker::TextTrackerView {
            sender_id: self.id,
            texts: log,
            state: &warm.state,
            verbosity,
        };
        let body = view
            .to_json_bytes()
            .map_err(|e| ApiError::internal("ConversationError", e.to_string()))?;
        self.state.states.put(self.id, log.epoch, &domain, warm);
        Ok(body)
    }

    pub(super) fn tracker(&self, events: &[Event]) -> Result<Response, ApiError> {
        let verbosity = self.query.verbosity()?;
        Ok(Json(tracker_json(
            self.id,
            &self.state.domain(),
            events,
            verbosity,
        ))
        .into_response())
    }
}

/// `GET /conversations` (0.x): the stored ids.
pub async fn list(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    admin_query(&state, &headers, q.as_deref())?;
    Ok(Json(state.conversations.keys().await?).into_response())
}

async fn get_route(
    state: &SharedState,
    rest: &str,
    headers: &HeaderMap,
    q: Option<&str>,
) -> Result<Response, ApiError> {
    match split(rest) {
        Some((id, "/tracker")) => get_tracker(Request::new(state, id, headers, q)?).await,
        Some((id, "/story")) => get_story(Request::new(state, id, headers, q)?).await,
        Some((id, "/respond")) => {
            super::dialogue::respond(Request::new(state, id, headers, q)?, None).await
        }
        _ => Ok(route_not_found("GET", rest)),
    }
}

async fn post_route(
    state: &SharedState,
    rest: &str,
    headers: &HeaderMap,
    q: Option<&str>,
    body: Bytes,
) -> Result<Response, ApiError> {
    match split(rest) {
        Some((id, "/tracker/events")) => {
            append_events(Request::new(state, id, headers, q)?, body).await
        }
        Some((id, "/messages")) => {
            super::dialogue::messages(Request::new(state, id, headers, q)?, body).await
        }
        Some((id, "/predict")) => {
            super::dialogue::predict(Request::new(state, id, headers, q)?).await
        }
        Some((id, "/execute")) => {
            super::dialogue::execute(Request::new(state, id, headers, q)?, body).await
        }
        Some((id, "/trigger_intent")) => {
            super::dialogue::trigger_intent(Request::new(state, id, headers, q)?, body).await
        }
        Some((id, "/respond")) => {
            super::dialogue::respond(Request::new(state, id, headers, q)?, Some(body)).await
        }
        _ => Ok(route_not_found("POST", rest)),
    }
}

async fn put_route(
    state: &SharedState,
    rest: &str,
    headers: &HeaderMap,
    q: Option<&str>,
    body: Bytes,
) -> Result<Response, ApiError> {
    match split(rest) {
        Some((id, "/tracker/events")) => {
            replace_events(Request::new(state, id, headers, q)?, body).await
        }
        _ => Ok(route_not_found("PUT", rest)),
    }
}

/// 3.6: an unknown or empty conversation shows a session start that is not stored.
async fn get_tracker(req: Request<'_>) -> Result<Response, ApiError> {
    let until = req.query.until()?;
    let conversations = &req.state.conversations;
    // The tracker lists events: their texts are read with the log (a tracker of no events
    // is written from the remembered state).
    let log = if until.is_none() && req.query.verbosity()? == EventVerbosity::None {
        conversations.read(req.id).await?
    } else {
        conversations.read_with_texts(req.id).await?
    };
    match log {
        Some(l) if !l.is_empty() && until.is_none() => req.tracker_of(l).await,
        Some(l) if !l.is_empty() => req.tracker(truncate_until(&l.events(req.id)?, until)),
        _ => {
            let mut fresh = session_start_events(Vec::new(), None);
            req.stamp(&mut fresh);
            req.tracker(truncate_until(&fresh, until))
        }
    }
}

async fn get_story(req: Request<'_>) -> Result<Response, ApiError> {
    let until = req.query.until()?;
    let all_sessions = req.query.flag("all_sessions", false);
    let Some(log) = req.state.conversations.read_with_texts(req.id).await? else {
        return Err(ApiError::conversation_not_found());
    };
    let text = story_yaml(req.id, &log.events(req.id)?, all_sessions, until);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Parses a body holding one event or a list of events; the whole list or nothing.
pub(super) fn parse_events(
    req: &Request<'_>,
    body: &Bytes,
    allow_single: bool,
) -> Result<Vec<Event>, ApiError> {
    // The usual body, a list of event objects (or one object), is read without building a
    // `Value` map per event (see `FlatObject`); anything else, valid or not, goes the general
    // way below, which gives the same events and names what is wrong.
    let objects = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice::<Vec<FlatObject<'_>>>(body).ok(),
        Some(b'{') if allow_single => serde_json::from_slice::<FlatObject<'_>>(body)
            .ok()
            .map(|object| vec![object]),
        _ => None,
    };
    if let Some(objects) = objects {
        check_event_count(req, objects.len())?;
        return Ok(Event::list_from_objects(&objects)?);
    }
    let value = json_body(body)?;
    let items: Vec<Value> = match value {
        Value::Array(items) => items,
        obj @ Value::Object(_) if allow_single => vec![obj],
        other => {
            let wanted = if allow_single {
                "an event object or a list of events"
            } else {
                "a list of events"
            };
            return Err(ApiError::bad_parameter(
                format!("The request body must be {wanted}, got {other}."),
                "",
                "body",
            ));
        }
    };
    check_event_count(req, items.len())?;
    Ok(Event::list_from_json(&items)?)
}

fn check_event_count(req: &Request<'_>, count: usize) -> Result<(), ApiError> {
    if count > req.state.limits.max_events_per_request {
        return Err(ApiError::bad_parameter(
            format!(
                "Too many events in one request ({} > {}).",
                count, req.state.limits.max_events_per_request
            ),
            "",
            "body",
        ));
    }
    Ok(())
}

async fn append_events(req: Request<'_>, body: Bytes) -> Result<Response, ApiError> {
    req.query.verbosity()?;
    let mut events = parse_events(&req, &body, true)?;
    if events.is_empty() {
        return Err(ApiError::bad_parameter(
            "Couldn't extract a proper event from the request body.",
            "",
            "body",
        ));
    }
    let side_effects = req.query.flag("execute_side_effects", false);
    let posted = if side_effects {
        events.clone()
    } else {
        Vec::new()
    };
    let (log, ()) = req
        .state
        .conversations
        .modify(req.id, |current| {
            let is_empty = current.is_none_or(Log::is_empty);
            let mut new = Vec::with_capacity(events.len() + 3);
            if is_empty && !starts_with_session_start(&events) {
                new.extend(session_start_events(Vec::new(), None));
            }
            new.append(&mut events);
            req.stamp(&mut new);
            Ok((Some(Write::Append(new)), ()))
        })
        .await?;
    if side_effects {
        execute_side_effects(&req, &log, &posted).await?;
    }
    req.tracker_of(log).await
}

/// `execute_side_effects=true`: posted `bot` events go to `output_channel`, reminders are
/// scheduled, `cancel_reminder` cancels. Only once the events are stored.
async fn execute_side_effects(
    req: &Request<'_>,
    log: &Log,
    posted: &[Event],
) -> Result<(), ApiError> {
    req.state
        .reminders
        .handle(&req.state.self_ref(), req.id, posted);
    let messages: Vec<crate::dialogue::output::ChannelMessage> = posted
        .iter()
        .flat_map(|e| crate::dialogue::output::channel_messages(req.id, e))
        .collect();
    if messages.is_empty() {
        return Ok(());
    }
    let channel = match req.query.get("output_channel") {
        Some("latest") => log
            .events(req.id)?
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                crate::engine::EventKind::User { input_channel, .. } => input_channel.clone(),
                _ => None,
            }),
        other => other.map(str::to_string),
    };
    match (channel.as_deref(), &req.state.channels.callback) {
        (Some("callback"), Some(cb)) => cb
            .send(&messages)
            .await
            .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "ChannelError", e)),
        // Channels without an output of their own collect the messages, which go nowhere.
        _ => Ok(()),
    }
}

async fn replace_events(req: Request<'_>, body: Bytes) -> Result<Response, ApiError> {
    req.query.verbosity()?;
    let events = parse_events(&req, &body, false)?;
    let (log, ()) = req
        .state
        .conversations
        .modify(req.id, |_| Ok((Some(Write::Replace(events)), ())))
        .await?;
    req.tracker_of(log).await
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn ids_may_contain_slashes() {
        assert_eq!(
            split("a/b+-_\\=/tracker/events"),
            Some(("a/b+-_\\=", "/tracker/events"))
        );
        assert_eq!(split("x/tracker"), Some(("x", "/tracker")));
        assert_eq!(split("/tracker"), None);
        assert_eq!(split("x/unknown"), None);
    }
}
