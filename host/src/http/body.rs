//! Reading a request body whole, within `--max-body-bytes`, for the routes answered ahead of
//! the axum router ([`super::dispatch`]). The router's own routes read theirs with axum's
//! extractors under `DefaultBodyLimit`; the errors here are the ones those give, in Rasa's body.

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use http_body_util::BodyExt as _;

use super::body_timeout::BodyTimedOut;
use super::ApiError;

/// The whole body, or 413 beyond `limit` bytes, 408 when it stalls beyond
/// `--body-read-timeout`, 400 when the connection fails while reading it. The messages are
/// those of axum's `to_bytes` (what the router's extractors answer).
///
/// Read frame by frame by hand rather than with `to_bytes`: a small request's body is one
/// frame, kept as it is, without the length-limit wrapper, the frame list and the boxed
/// errors that `to_bytes` sets up for every body (~1k instructions a request).
pub async fn read(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut first: Option<Bytes> = None;
    let mut joined: Option<Vec<u8>> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| read_error(&e))?;
        // Trailers carry no body bytes.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                "Failed to buffer the request body: length limit exceeded",
            ));
        }
        match (&mut joined, first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(earlier)) => {
                let mut both = Vec::with_capacity(earlier.len() + data.len());
                both.extend_from_slice(&earlier);
                both.extend_from_slice(&data);
                joined = Some(both);
            }
        }
    }
    Ok(match joined {
        Some(joined) => Bytes::from(joined),
        None => first.unwrap_or_default(),
    })
}

/// A body that failed while being read: 408 when it stalled, else 400.
fn read_error(error: &axum::Error) -> ApiError {
    let message = format!("Failed to buffer the request body: {error}");
    if caused_by::<BodyTimedOut>(error) {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "RequestTimeout", message)
    } else {
        ApiError::bad_request(message)
    }
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

    /// A body of several frames, some empty: joined in order, the limit counted across them
    /// (exactly at the limit is still fine).
    #[tokio::test]
    async fn a_body_of_several_frames_is_joined() {
        let frames = || {
            Body::new(http_body_util::StreamBody::new(futures::stream::iter(
                ["01", "", "2345", "6789"]
                    .map(|s| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(s)))),
            )))
        };
        assert_eq!(&read(frames(), 10).await.unwrap()[..], b"0123456789");
        let e = read(frames(), 9).await.unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(&read(Body::empty(), 0).await.unwrap()[..], b"");
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
