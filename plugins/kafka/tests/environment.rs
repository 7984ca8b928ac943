//! The `RASA_ENVIRONMENT` header carries the variable's value when it is set. A separate test
//! binary: it changes the process environment, which must not race with other tests.

mod common;

use std::time::Duration;

use colloquy_plugin_api::sdk::EventBrokerPlugin;
use colloquy_plugin_kafka::KafkaBroker;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn header_carries_rasa_environment() {
    std::env::set_var("RASA_ENVIRONMENT", "staging");
    let tansu = common::Tansu::start();
    common::create_topic(&tansu.bootstrap(), "env", 1).await;
    let broker =
        KafkaBroker::from_json(&json!({"url": tansu.bootstrap(), "topic": "env"}).to_string())
            .unwrap();
    broker
        .publish("s".into(), vec![json!({"event": "restart"}).to_string()])
        .await
        .unwrap();
    broker.flush(30_000).await.unwrap();
    let records =
        common::consume_async(&tansu.bootstrap(), "env", 1, 1, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].headers,
        vec![("RASA_ENVIRONMENT".to_string(), "staging".to_string())]
    );
    assert_eq!(records[0].payload, r#"{"sender_id":"s","event":"restart"}"#);
    broker.close().await.unwrap();
}
