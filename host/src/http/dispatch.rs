//! The innermost service: with the HTTP API enabled, every request under `/conversations/` is
//! answered by [`conversations::dispatch`] directly; everything else goes to the axum router.
//!
//! Why not a route: a route with a path parameter (`/conversations/{*rest}`, as it was) makes
//! axum's router percent-decode the parameter into a fresh `Arc<str>`, allocate the request's
//! extension map and insert the parameters there, and the `DefaultBodyLimit` layer inserts its
//! limit there too. That was ~2.5k instructions of the ~40k of an append (bench/instructions.sh
//! p1), the append being the request sent most. The conversation routes were already told apart
//! by hand (ids may contain `/`), so skipping the router skips only its lookup.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use futures::future::{BoxFuture, Either};

use super::{conversations, SharedState};

#[derive(Clone)]
pub struct Dispatch<R> {
    state: SharedState,
    /// Whether `/conversations/…` is served (`--enable-api`); otherwise the router's 404.
    conversations: bool,
    router: R,
}

impl<R> Dispatch<R> {
    pub fn new(state: SharedState, router: R) -> Self {
        Dispatch {
            conversations: state.enable_api,
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
        Either::Right(self.router.call(request))
    }
}
