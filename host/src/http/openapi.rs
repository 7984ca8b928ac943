//! `GET /openapi.json`: Colloquy's own OpenAPI 3 document (`host/openapi.yaml`), served as JSON.
//!
//! The unit tests below keep the document and the router in step: every route of
//! [`super::routes`] is described, every described operation is a route, and every `.route(`
//! of the router's source is in [`super::routes`].

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

/// The document's YAML text, compiled in.
pub const SPEC_YAML: &str = include_str!("../../openapi.yaml");

static SPEC: LazyLock<Value> = LazyLock::new(|| {
    serde_norway::from_str(SPEC_YAML).expect("host/openapi.yaml is valid YAML (unit-tested)")
});

/// The document as JSON.
pub fn spec() -> &'static Value {
    &SPEC
}

pub async fn openapi_json() -> Response {
    Json(spec().clone()).into_response()
}

/// Every `(METHOD, path)` the document describes.
pub fn described_operations(spec: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = spec.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                if item.get(method).is_some() {
                    out.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn served() -> BTreeSet<(String, String)> {
        super::super::routes()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect()
    }

    #[test]
    fn spec_parses_and_is_openapi_3() {
        assert!(spec()["openapi"].as_str().unwrap().starts_with("3."));
        let schemes = &spec()["components"]["securitySchemes"];
        assert_eq!(schemes["TokenAuth"]["in"], "query");
        assert_eq!(schemes["TokenAuth"]["name"], "token");
        assert_eq!(schemes["JWT"]["scheme"], "bearer");
    }

    #[test]
    fn every_route_is_described_and_every_description_is_a_route() {
        let described: BTreeSet<_> = described_operations(spec()).into_iter().collect();
        let served = served();
        let undocumented: Vec<_> = served.difference(&described).collect();
        let unserved: Vec<_> = described.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "routes the spec does not describe: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "operations of the spec that are not routes: {unserved:?}"
        );
    }

    /// The router's source registers only paths that `routes()` lists (a route added to
    /// `router()` without `routes()` and the spec fails here).
    #[test]
    fn router_source_registers_only_listed_paths() {
        let source = include_str!("mod.rs");
        let listed: BTreeSet<String> = super::super::routes()
            .into_iter()
            .map(|(_, p)| p.to_string())
            .collect();
        let mut seen = 0;
        for chunk in source.split(".route(").skip(1) {
            let path = chunk
                .trim_start()
                .trim_start_matches('"')
                .split('"')
                .next()
                .unwrap();
            seen += 1;
            assert!(
                listed.contains(path),
                "router registers {path}, which routes() does not list"
            );
        }
        assert!(seen >= 15, "found only {seen} .route( calls");
        for suffix in super::super::conversations::SUFFIXES {
            let path = format!("/conversations/{{conversation_id}}{suffix}");
            assert!(
                listed.contains(&path),
                "{path} is dispatched but not listed in routes()"
            );
        }
    }

    #[test]
    fn every_error_response_has_the_rasa_error_body() {
        let responses = spec()["components"]["responses"].as_object().unwrap();
        for (path, item) in spec()["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, resp) in op["responses"].as_object().unwrap() {
                    if !(status.starts_with('4') || status.starts_with('5')) {
                        continue;
                    }
                    let resp = match resp.get("$ref").and_then(Value::as_str) {
                        Some(r) => &responses[r.rsplit('/').next().unwrap()],
                        None => resp,
                    };
                    assert_eq!(
                        resp["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}
