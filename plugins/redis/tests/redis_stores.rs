//! The Redis stores against a real `redis-server` (started per test on a free port).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use colloquy_plugin_api::sdk::{self, testkit, LockStorePlugin, TrackerStorePlugin};
use colloquy_plugin_api::ErrorKind;
use colloquy_plugin_redis::{Kind, RedisConfig, RedisLockStore, RedisTrackerStore};
use common::RedisServer;
use redis::AsyncCommands;

fn tracker(server: &RedisServer, extra: &str) -> RedisTrackerStore {
    let json = format!(
        r#"{{"url": "127.0.0.1", "port": {}, "socket_timeout": 2 {extra}}}"#,
        server.port
    );
    RedisTrackerStore::new(&RedisConfig::parse(Kind::TrackerStore, &json).unwrap()).unwrap()
}

fn locks(server: &RedisServer, extra: &str) -> RedisLockStore {
    let json = format!(
        r#"{{"url": "127.0.0.1", "port": "{}", "socket_timeout": 2 {extra}}}"#,
        server.port
    );
    RedisLockStore::new(&RedisConfig::parse(Kind::LockStore, &json).unwrap()).unwrap()
}

fn event(n: usize) -> String {
    format!(r#"{{"event":"slot","timestamp":1700000000.123456,"name":"n","value":{n}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_suites_pass() {
    let server = RedisServer::start();
    for extra in ["", r#", "key_prefix": "abc1", "record_exp": 600"#] {
        let store = sdk::tracker_store_box(tracker(&server, extra), None);
        let report = testkit::tracker_store_suite(&store, "suite-").await;
        assert!(
            report.passed(),
            "tracker store ({extra}):\n{}",
            report.render()
        );
    }
    for extra in ["", r#", "key_prefix": "abc1""#] {
        let store = sdk::lock_store_box(locks(&server, extra), None);
        let report = testkit::lock_store_suite(&store, "suite-").await;
        assert!(
            report.passed(),
            "lock store ({extra}):\n{}",
            report.render()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rasa_written_tracker_is_read_then_converted_on_append() {
    let server = RedisServer::start();
    let mut raw = server.client(0).await;
    let rasa = r#"{"events": [{"event": "action", "timestamp": 1700000000.1234567, "name": "action_session_start", "policy": null, "confidence": 1.0}, {"event": "user", "timestamp": 1700000001.0, "text": "hi é", "metadata": {}}], "name": "user-42"}"#;
    let _: () = raw.set("bot7:tracker:user-42", rasa).await.unwrap();
    let store = tracker(&server, r#", "key_prefix": "bot7""#);

    let log = store
        .load("user-42".into(), 0)
        .await
        .unwrap()
        .expect("Rasa tracker is found");
    assert_eq!(log.length, 2);
    let first: serde_json::Value = serde_json::from_str(&log.events[0]).unwrap();
    assert_eq!(first["name"], "action_session_start");
    assert_eq!(first["timestamp"].as_f64(), Some(1700000000.1234567));
    assert!(
        log.events[0].starts_with(r#"{"event":"action","timestamp":"#),
        "key order kept: {}",
        log.events[0]
    );
    let tail = store.load("user-42".into(), 1).await.unwrap().unwrap();
    assert_eq!((tail.length, tail.events.len()), (2, 1));
    assert_eq!(store.keys().await.unwrap(), vec!["user-42".to_string()]);

    let pos = store
        .append("user-42".into(), vec![event(3)])
        .await
        .unwrap();
    assert_eq!(pos.length, 3);
    let kind: String = redis::cmd("TYPE")
        .arg("bot7:tracker:user-42")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(kind, "list", "converted to the list form");
    let log2 = store.load("user-42".into(), 0).await.unwrap().unwrap();
    assert_eq!(log2.length, 3);
    assert_eq!(log2.epoch, pos.epoch);
    assert_eq!(
        &log2.events[..2],
        &log.events[..],
        "converted events are unchanged"
    );
    assert_eq!(log2.events[2].as_str(), event(3));

    // A replace of a Rasa value simply overwrites it.
    let _: () = raw.set("bot7:tracker:other", rasa).await.unwrap();
    let pos = store.replace("other".into(), vec![event(1)]).await.unwrap();
    assert_eq!(pos.length, 1);
    let mut keys = store.keys().await.unwrap();
    keys.sort();
    assert_eq!(keys, vec!["other".to_string(), "user-42".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_exp_sets_and_refreshes_a_ttl_on_every_key() {
    let server = RedisServer::start();
    let mut raw = server.client(0).await;
    let store = tracker(&server, r#", "record_exp": "100""#);
    store.append("c1".into(), vec![event(1)]).await.unwrap();
    for key in ["tracker:c1", "tracker_epoch:c1"] {
        let ttl: i64 = raw.ttl(key).await.unwrap();
        assert!((95..=100).contains(&ttl), "{key}: ttl {ttl}");
    }
    let _: () = raw.expire("tracker:c1", 5).await.unwrap();
    store.append("c1".into(), vec![event(2)]).await.unwrap();
    let ttl: i64 = raw.ttl("tracker:c1").await.unwrap();
    assert!(ttl > 90, "refreshed on append: {ttl}");
    store.replace("c2".into(), vec![]).await.unwrap();
    let ttl: i64 = raw.ttl("tracker_epoch:c2").await.unwrap();
    assert!(ttl > 90, "empty replaced conversation expires too: {ttl}");

    let plain = tracker(&server, "");
    plain.append("c3".into(), vec![event(1)]).await.unwrap();
    let ttl: i64 = raw.ttl("tracker:c3").await.unwrap();
    assert_eq!(ttl, -1, "no record_exp, no TTL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefix_namespaces_keys_and_keys_strips_it() {
    let server = RedisServer::start();
    let mut raw = server.client(0).await;
    let a = tracker(&server, r#", "key_prefix": "botA""#);
    let b = tracker(&server, "");
    a.append("x:y*z".into(), vec![event(1)]).await.unwrap();
    a.replace("empty".into(), vec![]).await.unwrap();
    b.append("plain".into(), vec![event(1)]).await.unwrap();
    let exists: bool = raw.exists("botA:tracker:x:y*z").await.unwrap();
    assert!(exists, "Rasa's key naming: <prefix>:tracker:<id>");
    let mut ka = a.keys().await.unwrap();
    ka.sort();
    assert_eq!(ka, vec!["empty".to_string(), "x:y*z".to_string()]);
    assert_eq!(b.keys().await.unwrap(), vec!["plain".to_string()]);
    assert!(b.load("x:y*z".into(), 0).await.unwrap().is_none());
    let all: Vec<String> = raw.keys("*").await.unwrap();
    assert!(
        all.iter()
            .all(|k| !k.starts_with("botA:") || k.starts_with("botA:tracker")),
        "{all:?}"
    );
}

#[tokio::test]
async fn config_errors_name_the_key() {
    for (kind, json, key) in [
        (Kind::TrackerStore, r#"{"hots": "x"}"#, "hots"),
        (Kind::TrackerStore, r#"{"port": "abc"}"#, "`port`"),
        (Kind::TrackerStore, r#"{"db": true}"#, "`db`"),
        (
            Kind::TrackerStore,
            r#"{"key_prefix": "my-bot"}"#,
            "`key_prefix`",
        ),
        (Kind::TrackerStore, r#"{"lifetime": 3}"#, "`lifetime`"),
        (Kind::LockStore, r#"{"record_exp": 3}"#, "`record_exp`"),
        (
            Kind::LockStore,
            r#"{"socket_timeout": -1}"#,
            "`socket_timeout`",
        ),
        (
            Kind::LockStore,
            r#"{"use_ssl": true, "ssl_ca_certs": "/nonexistent/ca.pem"}"#,
            "`ssl_ca_certs`",
        ),
    ] {
        let err = match RedisConfig::parse(kind, json) {
            Err(e) => e,
            Ok(cfg) => match kind {
                Kind::TrackerStore => RedisTrackerStore::new(&cfg).err().expect("error"),
                Kind::LockStore => RedisLockStore::new(&cfg).err().expect("error"),
            },
        };
        assert_eq!(err.kind, ErrorKind::CONFIG, "{json}");
        assert!(err.message.contains(key), "{json}: {}", err.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_is_built_without_files() {
    // Only the client side: it must build (and not connect) with use_ssl and no files.
    let cfg = RedisConfig::parse(Kind::TrackerStore, r#"{"use_ssl": true, "port": 1}"#).unwrap();
    let store = RedisTrackerStore::new(&cfg).expect("TLS client builds");
    let err = store.load("x".into(), 0).await.unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::CONNECTION | ErrorKind::TIMEOUT),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_up_does_not_prevent_construction() {
    let port = common::free_port();
    let json = format!(r#"{{"port": {port}, "socket_timeout": 1}}"#);
    let store =
        RedisTrackerStore::new(&RedisConfig::parse(Kind::TrackerStore, &json).unwrap()).unwrap();
    let lock = RedisLockStore::new(&RedisConfig::parse(Kind::LockStore, &json).unwrap()).unwrap();
    let err = store.load("x".into(), 0).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CONNECTION, "{err}");
    let err = lock.acquire("x".into(), 1_000, 1_000).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CONNECTION, "{err}");
    let _server = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.append("x".into(), vec![event(1)]).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "did not connect once Redis was up: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let t = lock.acquire("x".into(), 1_000, 1_000).await.unwrap();
    lock.release("x".into(), t).await.unwrap();
}

/// Runs `openssl` with `args` in `dir`; false when openssl is missing or fails.
fn openssl(dir: &std::path::Path, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_ca_and_client_certificate() {
    let port = common::free_port();
    let dir = RedisServer::temp_dir(port);
    let ca = "-subj /CN=test-ca -keyout ca.key -out ca.crt";
    let mut ok = openssl(
        &dir,
        &[
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ][..],
            &ca.split(' ').collect::<Vec<_>>(),
        ]
        .concat(),
    ) && std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .is_ok();
    for name in ["server", "client"] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        ok =
            ok && openssl(
                &dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                ],
            ) && openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    "ext.cnf",
                    "-out",
                    &crt,
                ],
            );
    }
    if !ok {
        eprintln!("SKIPPED tls_with_ca_and_client_certificate: the `openssl` command is missing or failed");
        return;
    }
    let f = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let args: Vec<String> = vec![
        "--port".into(),
        "0".into(),
        "--tls-port".into(),
        port.to_string(),
        "--tls-cert-file".into(),
        f("server.crt"),
        "--tls-key-file".into(),
        f("server.key"),
        "--tls-ca-cert-file".into(),
        f("ca.crt"),
        "--tls-auth-clients".into(),
        "yes".into(),
    ];
    let _server = RedisServer::start_with(port, dir.clone(), args);
    let json = format!(
        r#"{{"url": "localhost", "port": {port}, "use_ssl": "true", "ssl_ca_certs": "{}",
            "ssl_certfile": "{}", "ssl_keyfile": "{}", "socket_timeout": 3}}"#,
        f("ca.crt"),
        f("client.crt"),
        f("client.key")
    );
    let store =
        RedisTrackerStore::new(&RedisConfig::parse(Kind::TrackerStore, &json).unwrap()).unwrap();
    let report = testkit::tracker_store_suite(&sdk::tracker_store_box(store, None), "tls-").await;
    assert!(
        report.passed(),
        "tracker store over TLS:\n{}",
        report.render()
    );
    let locks = RedisLockStore::new(&RedisConfig::parse(Kind::LockStore, &json).unwrap()).unwrap();
    let report = testkit::lock_store_suite(&sdk::lock_store_box(locks, None), "tls-").await;
    assert!(report.passed(), "lock store over TLS:\n{}", report.render());

    // Without the client certificate the server refuses the handshake: a connection error.
    let json = format!(
        r#"{{"url": "localhost", "port": {port}, "use_ssl": true, "ssl_ca_certs": "{}", "socket_timeout": 2}}"#,
        f("ca.crt")
    );
    let bare =
        RedisTrackerStore::new(&RedisConfig::parse(Kind::TrackerStore, &json).unwrap()).unwrap();
    let err = bare.load("x".into(), 0).await.unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::CONNECTION | ErrorKind::TIMEOUT),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_then_back_without_recreating_the_stores() {
    let mut server = RedisServer::start();
    let store = tracker(&server, "");
    let lock = locks(&server, "");
    store.append("r".into(), vec![event(1)]).await.unwrap();
    let t = lock.acquire("r".into(), 5_000, 1_000).await.unwrap();
    lock.release("r".into(), t).await.unwrap();

    server.kill();
    let start = Instant::now();
    let err = store.append("r".into(), vec![event(2)]).await.unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::CONNECTION | ErrorKind::TIMEOUT),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "failed slowly: {:?}",
        start.elapsed()
    );
    let err = store.load("r".into(), 0).await.unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::CONNECTION | ErrorKind::TIMEOUT),
        "{err}"
    );
    let err = lock.acquire("r".into(), 5_000, 1_000).await.unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::CONNECTION | ErrorKind::TIMEOUT),
        "{err}"
    );
    let health = store.health().await.unwrap();
    assert_eq!(health["ok"], false);
    eprintln!("while down: {err}");

    server.restart();
    // The same store objects recover (the data is gone: no persistence in this test).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.append("r".into(), vec![event(3)]).await {
            Ok(pos) => {
                assert_eq!(pos.length, 1);
                break;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "tracker store did not recover: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match lock.acquire("r".into(), 5_000, 1_000).await {
            Ok(t) => {
                lock.release("r".into(), t).await.unwrap();
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "lock store did not recover: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(store.health().await.unwrap()["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_200_locked_appends_keep_every_event_once() {
    let server = RedisServer::start();
    let hosts: Vec<(Arc<RedisTrackerStore>, Arc<RedisLockStore>)> = (0..2)
        .map(|_| (Arc::new(tracker(&server, "")), Arc::new(locks(&server, ""))))
        .collect();
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let (store, lock) = hosts[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let ticket = lock.acquire("shared".into(), 30_000, 60_000).await?;
            // Read-then-write under the lock: the event records the length it saw, which is
            // its own position only if no one else wrote in between.
            let seen = store
                .load("shared".into(), u64::MAX)
                .await?
                .map(|l| l.length)
                .unwrap_or(0);
            let ev = format!(
                r#"{{"event":"slot","timestamp":1.0,"name":"n","value":{i},"seen":{seen}}}"#
            );
            store.append("shared".into(), vec![ev]).await?;
            lock.release("shared".into(), ticket).await?;
            Ok::<_, colloquy_plugin_api::PluginError>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let log = hosts[0].0.load("shared".into(), 0).await.unwrap().unwrap();
    assert_eq!(log.length, 200);
    let mut values = Vec::new();
    for (pos, e) in log.events.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(e).unwrap();
        assert_eq!(
            v["seen"].as_u64(),
            Some(pos as u64),
            "a write happened between read and append"
        );
        values.push(v["value"].as_u64().unwrap());
    }
    values.sort();
    assert_eq!(
        values,
        (0..200).collect::<Vec<u64>>(),
        "every event exactly once"
    );
    let mut raw = server.client(1).await;
    let left: Vec<String> = raw.keys("lock_queue:*").await.unwrap();
    assert!(left.is_empty(), "queues are removed when empty: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_waiter_does_not_inherit_the_lock() {
    let server = RedisServer::start();
    let lock = locks(&server, "");
    let t1 = lock.acquire("ab".into(), 10_000, 1_000).await.unwrap();
    // A waiter whose future is dropped (the host's own timeout).
    let dropped = tokio::time::timeout(
        Duration::from_millis(200),
        lock.acquire("ab".into(), 10_000, 10_000),
    )
    .await;
    assert!(dropped.is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.release("ab".into(), t1).await.unwrap();
    let start = Instant::now();
    let t3 = lock.acquire("ab".into(), 10_000, 2_000).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "the dropped waiter held the lock"
    );
    lock.release("ab".into(), t3).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetime_zero_uses_the_configured_lifetime() {
    let server = RedisServer::start();
    let lock = locks(&server, r#", "lifetime": 0.3"#);
    let _held_forever = lock.acquire("lt".into(), 0, 1_000).await.unwrap();
    let start = Instant::now();
    let t = lock.acquire("lt".into(), 0, 3_000).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_millis(1_500),
        "{waited:?}"
    );
    lock.release("lt".into(), t).await.unwrap();
}
