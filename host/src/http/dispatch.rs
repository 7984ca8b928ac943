//! The innermost service: the two requests sent most are answered here directly, everything
//! else goes to the axum router. With the HTTP API enabled, every request under
//! `/conversations/` goes to [`conversations::dispatch`]; with the REST channel, `POST
//! /webhooks/rest/webhook` goes to [`rest::answer`] (its other methods go to the router, which
//! answers 405).
//!
//! Why not routes: a route makes axum's router allocate the request's extension map and
//! insert its path parameters there (percent-decoded into fresh `Arc<str>`s, for
//! `/conversations/{*rest}`), the `DefaultBodyLimit` layer inserts its limit there too, and the
//! handler's extractors box a future per request. That was ~3.5k instructions of the ~40k of an
//! append (bench/instructions.sh p1). The conversation routes were already told apart by hand
//! (ids may contain `/`), so skipping the router skips only its lookup; the body is read within
//! `--max-body-bytes` as the router's routes read theirs (`body.rs`).

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either};

use super::{conversations, ApiError, SharedState};
use crate::channels::rest;

#[derive(Clone)]
pub struct Dispatch<R> {
    state: SharedState,
    /// Whether `/conversations/…` is served (`--enable-api`); otherwise the router's 404.
    conversations: bool,
    /// Whether the REST channel is served; otherwise the router's 404.
    rest_webhook: bool,
    router: R,
}

impl<R> Dispatch<R> {
    pub fn new(state: SharedState, router: R) -> Self {
        Dispatch {
            conversations: state.enable_api,
            rest_webhook: state.channels.rest,
            state,
            router,
        }
    }
}

impl<R> tower::Service<Request<Body>> for Dispatch<R>
where
    R: tower::Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, R::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.router.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if self.conversations && request.uri().path().starts_with("/conversations/") {
            let state = self.state.clone();
            return Either::Left(Box::pin(async move {
                Ok(conversations::dispatch(state, request).await)
            }));
        }
        if self.rest_webhook
            && request.method() == axum::http::Method::POST
            && request.uri().path() == "/webhooks/rest/webhook"
        {
            let state = self.state.clone();
            return Either::Left(Box::pin(async move {
                Ok(rest_webhook(state, request).await.into_response())
            }));
        }
        Either::Right(self.router.call(request))
    }
}

async fn rest_webhook(state: SharedState, request: Request<Body>) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let body = super::body::read(body, state.limits.max_body_bytes).await?;
    rest::answer(&state, parts.uri.query(), &body).await
}
