//! Rasa's own Kafka endpoint fixtures, read in place: valid ones construct a broker without
//! any broker running, invalid ones fail with a CONFIG error naming the field.

use std::path::PathBuf;

use colloquy_plugin_api::ErrorKind;
use colloquy_plugin_kafka::KafkaBroker;
use serde_json::Value;

/// `$RASA_EVENT_BROKER_FIXTURES`, else the copy of Rasa's test fixtures in the shared docs.
fn fixture_dir() -> PathBuf {
    let dir = std::env::var_os("RASA_EVENT_BROKER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from("/work/shared/rasa/config-examples/rasa-3.x/test_endpoints/event_brokers")
        });
    assert!(
        dir.is_dir(),
        "Rasa's event broker fixtures not found at {}; set RASA_EVENT_BROKER_FIXTURES",
        dir.display()
    );
    dir
}

/// The `event_broker:` section as the host hands it over: JSON, without `type`.
fn section(file: &str) -> String {
    let path = fixture_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let yaml: Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut section = yaml["event_broker"]
        .as_object()
        .cloned()
        .expect("event_broker section");
    assert_eq!(section.remove("type"), Some(Value::from("kafka")));
    Value::Object(section).to_string()
}

#[test]
fn valid_fixtures_construct_without_a_broker() {
    for file in [
        "kafka_plaintext_endpoint.yml",
        "kafka_ssl_endpoint.yml",
        "kafka_sasl_ssl_endpoint.yml",
    ] {
        let broker = KafkaBroker::from_json(&section(file));
        assert!(broker.is_ok(), "{file}: {:?}", broker.err());
    }
}

#[test]
fn invalid_fixtures_name_the_field() {
    for (file, key) in [
        ("kafka_invalid_security_protocol.yml", "security_protocol"),
        ("kafka_invalid_sasl_mechanism.yml", "sasl_mechanism"),
        ("kafka_plaintext_endpoint_no_url.yml", "url"),
        // Rasa ignores unknown keys; Colloquy reports them (a typo must not pass silently).
        ("kafka_sasl_plaintext_endpoint.yml", "partition_key"),
    ] {
        let err = KafkaBroker::from_json(&section(file))
            .err()
            .unwrap_or_else(|| panic!("{file}: accepted"));
        assert_eq!(err.kind, ErrorKind::CONFIG, "{file}: {err}");
        assert!(
            err.message.contains(&format!("`{key}`")) || err.message.contains(key),
            "{file}: {err}"
        );
    }
}

#[test]
fn librdkafka_refusals_are_config_errors_naming_the_key() {
    let err = KafkaBroker::from_json(
        r#"{"url": "127.0.0.1:1", "librdkafka": {"no.such.property": "1"}}"#,
    )
    .err()
    .expect("unknown librdkafka property");
    assert_eq!(err.kind, ErrorKind::CONFIG, "{err}");
    assert!(err.message.contains("librdkafka.no.such.property"), "{err}");

    let err = KafkaBroker::from_json(r#"{"url": "127.0.0.1:1", "security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}"#)
        .err()
        .expect("missing CA file");
    assert_eq!(err.kind, ErrorKind::CONFIG, "{err}");
    assert!(err.message.contains("ssl_cafile"), "{err}");
}
