//! Through the exported constructor, as the host's loader calls it: the plugin's own runtime,
//! the config as JSON (with the SDK's `worker_threads`), and logs forwarded to the host.

mod common;

use std::sync::{Arc, Mutex};

use colloquy_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use colloquy_plugin_api::abi_stable::std_types::{RArc, RResult, RStr, RString};
use colloquy_plugin_api::{ErrorKind, HostApi, HostApiBox, HostApi_TO, PluginError};
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
async fn exported_constructor_fetches_in_the_plugin_runtime() {
    let host = TestHost::default();
    let host_box: HostApiBox = HostApi_TO::from_ptr(RArc::new(host.clone()), TD_Opaque);
    let module = colloquy_plugin_http_model_source::colloquy_plugin_root_module();
    let ctor = module.new_model_source().expect("provides a model source");

    let server =
        FakeServer::start(|_| Reply::status(200).header("ETag", "\"v1\"").body("archive")).await;
    let dir = tempfile::tempdir().unwrap();
    let config =
        json!({"url": server.url("/m"), "wait_time_between_pulls": "2", "worker_threads": 1});
    let source = ctor(RStr::from_str(&config.to_string()), host_box.clone())
        .into_result()
        .expect("constructed");
    let request = json!({"current_fingerprint": null, "dest_dir": dir.path()});
    let answer = source
        .fetch(request.to_string().into())
        .await
        .into_result()
        .unwrap();
    let answer: Value = serde_json::from_str(answer.as_str()).unwrap();
    assert_eq!(answer["status"], "new");
    assert_eq!(answer["fingerprint"], "v1");
    assert_eq!(answer["next_poll_ms"], 2000);
    assert_eq!(
        std::fs::read_to_string(answer["path"].as_str().unwrap()).unwrap(),
        "archive"
    );

    let err = ctor(
        RStr::from_str(r#"{"url": "http://h", "wait_time_between_pull": 3}"#),
        host_box.clone(),
    )
    .into_result()
    .err()
    .expect("refused");
    assert_eq!(err.kind, ErrorKind::CONFIG);
    assert!(err.message.contains("wait_time_between_pull"), "{err}");

    let config = json!({"url": unreachable_url().await, "token": "s3cret"});
    let down = ctor(RStr::from_str(&config.to_string()), host_box)
        .into_result()
        .expect("constructed");
    let err = down
        .fetch(request.to_string().into())
        .await
        .into_result()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::CONNECTION);
    let lines = host.lines.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|(level, text)| *level == 2 && text.contains("model pull failed")),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|(_, text)| !text.contains("s3cret")),
        "{lines:?}"
    );
}
