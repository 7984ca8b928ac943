//! Reading a request body whole, within `--max-body-bytes`, for the routes answered ahead of
//! the axum router ([`super::dispatch`]). The router's own routes read theirs with axum's
//! extractors under `DefaultBodyLimit`; the errors here are the ones those give, in Rasa's body.

use axum::body::{Body, Bytes};
use axum::http::StatusCode;

use super::body_timeout::BodyTimedOut;
use super::ApiError;

/// The whole body, or 413 beyond `limit` bytes, 408 when it stalls beyond
/// `--body-read-timeout`, 400 when the connection fails while reading it.
pub async fn read(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let message = format!("Failed to buffer the request body: {e}");
        if caused_by::<http_body_util::LengthLimitError>(&e) {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", message)
        } else if caused_by::<BodyTimedOut>(&e) {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "RequestTimeout", message)
        } else {
            ApiError::bad_request(message)
        }
    })
}

/// Whether `error` or anything in its chain of sources is an `E`.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = read(Body::from("0123456789"), 10).await.unwrap();
        assert_eq!(&body[..], b"0123456789");
    }

    #[tokio::test]
    async fn a_body_beyond_the_limit_is_413() {
        let e = read(Body::from("0123456789"), 9).await.unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.reason, "PayloadTooLarge");
        assert_eq!(
            e.message,
            "Failed to buffer the request body: length limit exceeded"
        );
    }

    #[tokio::test]
    async fn a_stalled_body_is_408_and_a_broken_one_400() {
        let timed_out = Body::new(http_body_util::StreamBody::new(futures::stream::iter([
            Err::<http_body::Frame<Bytes>, _>(BodyTimedOut::new(Duration::from_secs(1))),
        ])));
        let e = read(timed_out, 100).await.unwrap_err();
        assert_eq!(e.status, StatusCode::REQUEST_TIMEOUT, "{}", e.message);
        let broken = Body::new(http_body_util::StreamBody::new(futures::stream::iter([
            Err::<http_body::Frame<Bytes>, _>(std::io::Error::other("connection reset")),
        ])));
        let e = read(broken, 100).await.unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("connection reset"), "{}", e.message);
    }
}
