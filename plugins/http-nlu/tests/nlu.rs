//! The HTTP NLU connector against an NLU server written here (127.0.0.1, hand-written
//! HTTP/1.1): both protocols, token placement, headers, failure and timeout paths, Unicode
//! and empty text.

mod common;

use std::time::Duration;

use colloquy_plugin_api::sdk::{self, NluConnectorPlugin};
use colloquy_plugin_api::ErrorKind;
use colloquy_plugin_http_nlu::{empty_parse_result, HttpNlu};
use common::{unreachable_url, FakeServer, Recorded, Reply};
use serde_json::{json, Value};

fn nlu(config: Value) -> HttpNlu {
    HttpNlu::from_config_json(&config.to_string()).expect("valid config")
}

fn msg(text: &str) -> Value {
    json!({"text": text, "message_id": "m-1", "sender_id": "alice"})
}

/// A Rasa NLU server: echoes the text, calls everything `greet`.
fn rasa_answer(r: &Recorded) -> Reply {
    let text = if r.method == "POST" {
        r.json()["text"].as_str().unwrap_or("").to_string()
    } else {
        r.query_value("q").unwrap_or_default()
    };
    let intent = json!({"name": "greet", "confidence": 0.93});
    Reply::status(200).json(&json!({
        "text": text,
        "intent": intent,
        "entities": [{"entity": "name", "value": "Zoë", "start": 0, "end": 3}],
        "intent_ranking": [intent, {"name": "goodbye", "confidence": 0.07}],
    }))
}

async fn health(n: &HttpNlu) -> Value {
    n.health().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rasa3_protocol_posts_to_model_parse_with_the_token_in_query_and_body() {
    let server = FakeServer::start(rasa_answer).await;
    for base in [server.url(""), server.url("/"), server.url("//")] {
        let n = nlu(json!({"url": base, "token": "s3cret&x", "headers": {"X-Team": "bots"}}));
        let answer = n.parse(msg("hello there")).await.unwrap();
        let r = server.last();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path(), "/model/parse", "{base}");
        assert_eq!(
            r.query(),
            vec![("token".to_string(), "s3cret&x".to_string())]
        );
        assert_eq!(
            r.json(),
            json!({"text": "hello there", "message_id": "alice", "token": "s3cret&x"})
        );
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        assert_eq!(r.header("x-team"), Some("bots"));
        assert_eq!(answer["intent"]["name"], "greet");
        assert_eq!(answer["text"], "hello there");
        assert_eq!(answer["intent_ranking"].as_array().unwrap().len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rasa3_token_name_sub_path_and_no_token() {
    let server = FakeServer::start(rasa_answer).await;
    let n = nlu(json!({"url": server.url("/nlu/"), "token": "t", "token_name": "auth"}));
    n.parse(msg("hi")).await.unwrap();
    let r = server.last();
    assert_eq!(r.path(), "/nlu/model/parse");
    assert_eq!(r.query(), vec![("auth".to_string(), "t".to_string())]);
    assert_eq!(r.json()["token"], "t");

    let n = nlu(json!({"url": server.url("/nlu")}));
    n.parse(msg("hi")).await.unwrap();
    let r = server.last();
    assert_eq!(r.target, "/nlu/model/parse", "no query without a token");
    assert_eq!(
        r.json(),
        json!({"text": "hi", "message_id": "alice", "token": null})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rasa_core_protocol_gets_parse_with_query_parameters() {
    let server = FakeServer::start(rasa_answer).await;
    let n = nlu(json!({
        "url": server.url("/"),
        "token": "s3cret",
        "token_name": "ignored_here",
        "model": "default/current",
        "headers": {"X-Team": "bots"},
    }));
    let answer = n.parse(msg("hello & good-bye?")).await.unwrap();
    let r = server.last();
    assert_eq!(r.method, "GET");
    assert_eq!(r.path(), "/parse");
    assert!(r.body.is_empty());
    assert_eq!(
        r.query(),
        [
            ("q", "hello & good-bye?"),
            ("project", "default"),
            ("model", "current"),
            ("token", "s3cret"),
            ("message_id", "m-1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    );
    assert_eq!(r.header("x-team"), Some("bots"));
    assert_eq!(answer["text"], "hello & good-bye?");
    assert_eq!(answer["intent"]["name"], "greet");
}

#[tokio::test(flavor = "multi_thread")]
async fn rasa_core_omits_null_parameters_and_splits_models_like_paths() {
    let server = FakeServer::start(rasa_answer).await;
    // protocol without a model: no project, model or token.
    let n = nlu(json!({"url": server.url(""), "protocol": "rasa_core"}));
    n.parse(json!({"text": "hi", "message_id": null, "sender_id": null}))
        .await
        .unwrap();
    assert_eq!(server.last().target, "/parse?q=hi");

    // `-u current`: project "" (sent), model "current".
    let n = nlu(json!({"url": server.url(""), "model": "current"}));
    n.parse(msg("hi")).await.unwrap();
    let q = server.last().query();
    assert!(q.contains(&("project".into(), "".into())), "{q:?}");
    assert!(q.contains(&("model".into(), "current".into())), "{q:?}");

    // A nested project keeps its slashes; the request's `model` overrides the config's.
    let n = nlu(json!({"url": server.url(""), "model": "a/b"}));
    n.parse(json!({"text": "hi", "message_id": "m", "sender_id": "s", "model": "x/y/z"}))
        .await
        .unwrap();
    let r = server.last();
    assert_eq!(r.query_value("project").as_deref(), Some("x/y"));
    assert_eq!(r.query_value("model").as_deref(), Some("z"));

    // An explicit `protocol: rasa` ignores the model.
    let n = nlu(json!({"url": server.url(""), "model": "a/b", "protocol": "rasa"}));
    n.parse(msg("hi")).await.unwrap();
    assert_eq!(server.last().path(), "/model/parse");
}

#[tokio::test(flavor = "multi_thread")]
async fn unicode_and_empty_text_round_trip() {
    let server = FakeServer::start(rasa_answer).await;
    let texts = ["Zoë says 你好 👋 — ça va?", "", "a+b=c %20 /greet"];
    for protocol in ["rasa", "rasa_core"] {
        let n = nlu(json!({"url": server.url(""), "protocol": protocol}));
        for text in texts {
            let answer = n.parse(msg(text)).await.unwrap();
            let r = server.last();
            let sent = if protocol == "rasa" {
                r.json()["text"].as_str().unwrap().to_string()
            } else {
                r.query_value("q").unwrap()
            };
            assert_eq!(sent, text, "{protocol}");
            assert_eq!(answer["text"], text, "{protocol}");
            assert_eq!(answer["entities"][0]["value"], "Zoë");
        }
        assert_eq!(
            health(&n).await,
            json!({"ok": true, "failures": 0, "calls": 3})
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_server_gives_the_empty_result_and_counts() {
    let cases: Vec<(&str, Reply)> = vec![
        ("500", Reply::status(500).body("boom")),
        ("401", Reply::status(401).body("unauthorised")),
        ("404", Reply::status(404)),
        (
            "invalid JSON",
            Reply::status(200).body("<html>not json</html>"),
        ),
        ("not an object", Reply::status(200).json(&json!(["greet"]))),
    ];
    for (what, reply) in cases {
        let server = FakeServer::start(move |_| reply.clone()).await;
        let n = nlu(json!({"url": server.url(""), "token": "s3cret"}));
        let answer = n.parse(msg("héllo")).await.unwrap();
        assert_eq!(answer, empty_parse_result("héllo"), "{what}");
        assert_eq!(
            answer,
            json!({"text": "héllo", "intent": {"name": null, "confidence": 0.0}, "entities": [], "intent_ranking": []})
        );
        assert_eq!(
            health(&n).await,
            json!({"ok": false, "failures": 1, "calls": 1}),
            "{what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_gives_the_empty_result_then_recovers_in_health() {
    let n = nlu(json!({"url": unreachable_url().await, "protocol": "rasa_core"}));
    for i in 1..=2u64 {
        let answer = n.parse(msg("")).await.unwrap();
        assert_eq!(answer, empty_parse_result(""));
        assert_eq!(
            health(&n).await,
            json!({"ok": false, "failures": i, "calls": i})
        );
    }
    // `ok` reflects the last call.
    let server = FakeServer::start(rasa_answer).await;
    let n2 = nlu(json!({"url": server.url("")}));
    assert_eq!(
        health(&n2).await,
        json!({"ok": true, "failures": 0, "calls": 0})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_server_times_out_into_the_empty_result() {
    let server = FakeServer::start(|r| {
        if r.json()["text"] == "slow" {
            rasa_answer(r).delay(Duration::from_secs(3))
        } else {
            rasa_answer(r)
        }
    })
    .await;
    let n = nlu(json!({"url": server.url(""), "timeout": 0.3}));
    let started = std::time::Instant::now();
    let answer = n.parse(msg("slow")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer, empty_parse_result("slow"));
    assert_eq!(
        health(&n).await,
        json!({"ok": false, "failures": 1, "calls": 1})
    );
    // The next call succeeds: `ok` is the last call's outcome, the counter stays.
    let answer = n.parse(msg("fast")).await.unwrap();
    assert_eq!(answer["intent"]["name"], "greet");
    assert_eq!(
        health(&n).await,
        json!({"ok": true, "failures": 1, "calls": 2})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_answers_are_completed() {
    let server = FakeServer::start(|_| {
        Reply::status(200)
            .json(&json!({"intent": {"name": "affirm", "confidence": 1.0}, "extra": 1}))
    })
    .await;
    let n = nlu(json!({"url": server.url("")}));
    let answer = n.parse(msg("yes")).await.unwrap();
    assert_eq!(
        answer,
        json!({"intent": {"name": "affirm", "confidence": 1.0}, "extra": 1, "text": "yes", "entities": [], "intent_ranking": []})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn params_and_basic_auth_and_header_override() {
    let server = FakeServer::start(rasa_answer).await;
    let n = nlu(json!({
        "url": server.url(""),
        "token": "t",
        "params": {"lang": "it"},
        "basic_auth": {"username": "alice", "password": "pw"},
        "headers": {"Content-Type": "application/json; charset=utf-8"},
    }));
    n.parse(msg("ciao")).await.unwrap();
    let r = server.last();
    assert_eq!(
        r.query(),
        vec![("token".into(), "t".into()), ("lang".into(), "it".into())]
    );
    assert_eq!(r.header("authorization"), Some("Basic YWxpY2U6cHc="));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_are_invalid_input() {
    let n = nlu(json!({"url": "http://127.0.0.1:9"}));
    for req in [
        json!({}),
        json!({"text": null}),
        json!({"text": 3}),
        json!({"text": "x", "sender_id": 5}),
    ] {
        let err = n.parse(req.clone()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{req}");
    }
    assert_eq!(health(&n).await["calls"], 0);
}

#[test]
fn config_errors_name_the_key() {
    for (config, key) in [
        (json!({}), "url"),
        (json!({"url": "http://h", "protocol": "rasa_x"}), "protocol"),
        (
            json!({"url": "http://h", "cafile": "/nonexistent/ca.pem"}),
            "cafile",
        ),
        (
            json!({"url": "http://h", "emulation_mode": "wit"}),
            "emulation_mode",
        ),
    ] {
        let err = HttpNlu::from_config_json(&config.to_string())
            .err()
            .expect("refused");
        assert_eq!(err.kind, ErrorKind::CONFIG);
        assert!(err.message.contains(key), "{config}: {err}");
    }
}

/// Through the ABI object, as the host calls it, and the exported root module.
#[tokio::test(flavor = "multi_thread")]
async fn through_the_abi_box() {
    let server = FakeServer::start(rasa_answer).await;
    let boxed = sdk::nlu_connector_box(nlu(json!({"url": server.url(""), "token": "t"})), None);
    let answer = boxed.parse(msg("hello").to_string().into()).await.unwrap();
    let answer: Value = serde_json::from_str(answer.as_str()).unwrap();
    assert_eq!(answer["intent"]["name"], "greet");
    let health: Value = serde_json::from_str(boxed.health().await.unwrap().as_str()).unwrap();
    assert_eq!(health, json!({"ok": true, "failures": 0, "calls": 1}));

    let down = sdk::nlu_connector_box(nlu(json!({"url": unreachable_url().await})), None);
    let answer = down.parse(msg("hello").to_string().into()).await.unwrap();
    let answer: Value = serde_json::from_str(answer.as_str()).unwrap();
    assert_eq!(answer, empty_parse_result("hello"));

    let module = colloquy_plugin_http_nlu::colloquy_plugin_root_module();
    assert_eq!(module.name()().as_str(), "http");
    assert!(module.new_nlu_connector().is_some());
    assert!(module.new_model_source().is_none());
}
