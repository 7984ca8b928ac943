//! Through the exported constructor, as the host's loader calls it: the plugin's own runtime,
//! the config as JSON (with the SDK's `worker_threads`), and logs forwarded to the host.

mod common;

use std::sync::{Arc, Mutex};

use colloquy_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use colloquy_plugin_api::abi_stable::std_types::{RArc, RResult, RStr, RString};
use colloquy_plugin_api::{HostApi, HostApiBox, HostApi_TO, PluginError};
use colloquy_plugin_http_nlu::empty_parse_result;
use common::{unreachable_url, FakeServer, Reply};
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct TestHost {
    lines: Arc<Mutex<Vec<(u8, String)>>>,
}

impl HostApi for TestHost {
    fn log(&self, level: u8, _target: RStr<'_>, message: RStr<'_>) {
        self.lines
            .lock()
            .unwrap()
            .push((level, message.as_str().to_string()));
    }
    fn call(&self, op: RStr<'_>, _payload: RStr<'_>) -> RResult<RString, PluginError> {
        RResult::RErr(PluginError::unsupported(op.as_str()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exported_constructor_parses_in_the_plugin_runtime() {
    let host = TestHost::default();
    let host_box: HostApiBox = HostApi_TO::from_ptr(RArc::new(host.clone()), TD_Opaque);
    let module = colloquy_plugin_http_nlu::colloquy_plugin_root_module();
    let ctor = module
        .new_nlu_connector()
        .expect("provides an NLU connector");

    let server = FakeServer::start(|r| {
        let text = r.json()["text"].clone();
        Reply::status(200).json(&json!({"text": text, "intent": {"name": "greet", "confidence": 1.0}, "entities": [], "intent_ranking": []}))
    })
    .await;
    let config = json!({"url": server.url(""), "token": "s3cret", "worker_threads": 1});
    let nlu = ctor(RStr::from_str(&config.to_string()), host_box.clone())
        .into_result()
        .expect("constructed");
    let answer = nlu
        .parse(
            json!({"text": "hi", "message_id": "m", "sender_id": "s"})
                .to_string()
                .into(),
        )
        .await
        .into_result()
        .unwrap();
    let answer: Value = serde_json::from_str(answer.as_str()).unwrap();
    assert_eq!(answer["intent"]["name"], "greet");
    assert_eq!(
        server.last().query_value("token").as_deref(),
        Some("s3cret")
    );

    // A bad config is refused by name.
    let err = ctor(
        RStr::from_str(r#"{"url": "http://h", "timeot": 3}"#),
        host_box.clone(),
    )
    .into_result()
    .err()
    .expect("refused");
    assert!(err.message.contains("timeot"), "{err}");

    // A failing server: the empty result, and the warning reaches the host's log.
    let config = json!({"url": unreachable_url().await, "token": "s3cret"});
    let down = ctor(RStr::from_str(&config.to_string()), host_box)
        .into_result()
        .expect("constructed");
    let answer = down
        .parse(
            json!({"text": "hi", "message_id": null, "sender_id": "s"})
                .to_string()
                .into(),
        )
        .await
        .into_result()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(answer.as_str()).unwrap(),
        empty_parse_result("hi")
    );
    let health: Value =
        serde_json::from_str(down.health().await.into_result().unwrap().as_str()).unwrap();
    assert_eq!(health, json!({"ok": false, "failures": 1, "calls": 1}));
    let lines = host.lines.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|(level, text)| *level == 2 && text.contains("NLU server")),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|(_, text)| !text.contains("s3cret")),
        "{lines:?}"
    );
}
