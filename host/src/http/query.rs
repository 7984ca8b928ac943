//! Query parameters and bodies, parsed by hand so that every failure is Rasa's error JSON.

use std::borrow::Cow;

use axum::body::Bytes;
use serde_json::Value;

use super::ApiError;
use crate::engine::EventVerbosity;

/// Decoded query pairs (the last value of a repeated key wins), borrowed from the request's
/// query where nothing needed decoding.
pub struct Query<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Query<'a> {
    /// `application/x-www-form-urlencoded` pairs. A query without `%` or `+` (the usual
    /// `include_events=NONE`) has nothing to decode: its pairs are split off as they are, which
    /// costs a fraction of the general decoder's work on every request.
    pub fn parse(raw: Option<&'a str>) -> Query<'a> {
        let Some(q) = raw else {
            return Query(Vec::new());
        };
        if q.bytes().any(|b| b == b'%' || b == b'+') {
            return Query(form_urlencoded::parse(q.as_bytes()).collect());
        }
        // As form_urlencoded: `&` separates pairs (empty ones are skipped), the first `=`
        // separates name and value, a pair without one has an empty value.
        Query(
            q.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) => (Cow::Borrowed(k), Cow::Borrowed(v)),
                    None => (Cow::Borrowed(pair), Cow::Borrowed("")),
                })
                .collect(),
        )
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
    /// Rasa's boolean rule: true only for `true`, case-insensitive.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        self.get(key)
            .map(|v| v.eq_ignore_ascii_case("true"))
            .unwrap_or(default)
    }
    pub fn verbosity(&self) -> Result<EventVerbosity, ApiError> {
        match self.get("include_events") {
            None => Ok(EventVerbosity::AfterRestart),
            Some(v) => EventVerbosity::parse(v).ok_or_else(|| {
                ApiError::bad_parameter(
                    "Invalid parameter value for 'include_events'. Should be one of NONE, APPLIED, AFTER_RESTART, ALL",
                    "include_events",
                    "query",
                )
            }),
        }
    }
    pub fn until(&self) -> Result<Option<f64>, ApiError> {
        match self.get("until") {
            None => Ok(None),
            Some(v) => match v.trim().parse::<f64>() {
                Ok(t) if t.is_finite() => Ok(Some(t)),
                _ => Err(ApiError::bad_parameter(
                    format!("Invalid parameter value for 'until': '{v}' is not a number"),
                    "until",
                    "query",
                )),
            },
        }
    }
}

/// Parses the query and checks auth for a route without a conversation id (admin only).
pub fn admin_query<'a>(
    state: &super::AppState,
    headers: &axum::http::HeaderMap,
    raw: Option<&'a str>,
) -> Result<Query<'a>, ApiError> {
    let q = Query::parse(raw);
    state.auth.check(headers, q.get("token"), None)?;
    Ok(q)
}

/// The body as JSON; an empty or invalid body is a 400 with Rasa's error JSON.
pub fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_parameter(
            "No request body provided.",
            "",
            "body",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_parameter(format!("Request body is not valid JSON: {e}"), "", "body")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split-only path answers what the general decoder answers, for queries with and
    /// without anything to decode.
    #[test]
    fn pairs_are_the_decoders_pairs() {
        let queries = [
            "",
            "include_events=NONE",
            "include_events=NONE&token=abc",
            "a=1&a=2",
            "&&a=1&&b&c=&=d&",
            "a==b=c",
            "token=x%2By&until=1.5",
            "q=hello+world",
            "caf%C3%A9=%E2%82%AC",
            "bad=%ZZ%",
            "k=v;w",
            "ünï=cödé",
        ];
        for q in queries {
            let expected: Vec<(String, String)> =
                form_urlencoded::parse(q.as_bytes()).into_owned().collect();
            let pairs: Vec<(String, String)> = Query::parse(Some(q))
                .0
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(pairs, expected, "{q:?}");
        }
        assert!(Query::parse(None).0.is_empty());
        let q = Query::parse(Some("include_events=ALL&include_events=NONE"));
        assert_eq!(q.get("include_events"), Some("NONE"));
    }
}
