//! The Redis plugin (`type: redis`, tracker store and lock store) through the real binary:
//! persistence across host restarts, Rasa-written trackers, TTL and prefixes, two hosts sharing
//! one Redis under concurrent load, Redis restarts and outages (issue 5, decisions §2, §5).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use colloquy_blackbox_tests::services::{wait_for, FakeRedis, RedisServer, Resp};
use colloquy_blackbox_tests::{assert_rasa_error, cargo_artifact, Server};
use serde_json::{json, Value};

/// The directory holding the freshly built Redis plugin (built once per test process).
fn plugin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        cargo_artifact("colloquy-plugin-redis", "cdylib")
            .parent()
            .unwrap()
            .to_path_buf()
    })
    .clone()
}

fn endpoints(port: u16, tracker_extra: &str, lock_extra: &str) -> String {
    format!(
        "tracker_store:\n  type: redis\n  url: 127.0.0.1\n  port: {port}\n  socket_timeout: 5\n{tracker_extra}\
         lock_store:\n  type: redis\n  url: 127.0.0.1\n  port: {port}\n  socket_timeout: 5\n{lock_extra}"
    )
}

fn host(yaml: &str) -> Server {
    Server::builder()
        .arg("--plugin-dir")
        .arg(plugin_dir().to_str().unwrap())
        .endpoints(yaml)
        .start()
}

fn events_path(id: &str) -> String {
    format!("/conversations/{id}/tracker/events")
}

fn all_events(s: &Server, id: &str) -> Vec<Value> {
    let (st, t) = s.get(&format!("/conversations/{id}/tracker?include_events=ALL"));
    assert_eq!(st, 200, "{t}");
    t["events"].as_array().unwrap().clone()
}

fn slot(value: impl Into<Value>) -> Value {
    json!({"event": "slot", "name": "n", "value": value.into()})
}

/// The values of the `slot` events named `n`, in order.
fn slot_values(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e["event"] == "slot" && e["name"] == "n")
        .map(|e| e["value"].as_i64().expect("integer slot value"))
        .collect()
}

fn count_named(events: &[Value], event: &str, name: &str) -> usize {
    events
        .iter()
        .filter(|e| e["event"] == event && e["name"] == name)
        .count()
}

/// Every key of `expected` is in `got` with a value that contains it in turn.
fn assert_contains(got: &Value, expected: &Value) {
    match (got, expected) {
        (Value::Object(g), Value::Object(e)) => {
            for (k, v) in e {
                let Some(gv) = g.get(k) else {
                    panic!("`{k}` missing from {got}")
                };
                assert_contains(gv, v);
            }
        }
        _ => assert_eq!(got, expected),
    }
}

#[test]
fn a_conversation_persists_across_a_host_restart() {
    let redis = RedisServer::start();
    let yaml = endpoints(redis.port, "", "");
    let before = {
        let s = host(&yaml);
        for i in 0..5 {
            let (st, body) = s.post(&events_path("persist"), &slot(i));
            assert_eq!(st, 200, "{body}");
        }
        let events = all_events(&s, "persist");
        assert_eq!(slot_values(&events), [0, 1, 2, 3, 4]);
        assert_eq!(count_named(&events, "action", "action_session_start"), 1);
        events
        // The host is killed here (SIGKILL on drop): nothing may live only in its memory.
    };
    assert_eq!(
        redis.cmd(&["LLEN", "tracker:persist"]).int(),
        before.len() as i64
    );

    let s = host(&yaml);
    assert_eq!(
        all_events(&s, "persist"),
        before,
        "same events after restart"
    );
    let (_, ids) = s.get("/conversations");
    assert_eq!(ids, json!(["persist"]));
    let (st, _) = s.post(&events_path("persist"), &slot(5));
    assert_eq!(st, 200);
    let events = all_events(&s, "persist");
    assert_eq!(slot_values(&events), [0, 1, 2, 3, 4, 5]);
    assert_eq!(&events[..before.len()], &before[..]);
    assert_eq!(
        count_named(&events, "action", "action_session_start"),
        1,
        "a restarted host does not start a second session"
    );
}

#[test]
fn a_tracker_written_by_rasa_is_served_then_appended_to() {
    let redis = RedisServer::start();
    // What Rasa 3.6's RedisTrackerStore stores: one JSON string under `tracker:<id>`
    // (rasa-endpoints-and-protocols.md §2.2, §2.4).
    let rasa_events = json!([
        {"event": "action", "timestamp": 1700000000.10, "name": "action_session_start", "policy": null,
         "confidence": 1.0, "action_text": null, "hide_rule_turn": false, "metadata": {"model_id": "m1"}},
        {"event": "session_started", "timestamp": 1700000000.11, "metadata": {"model_id": "m1"}},
        {"event": "action", "timestamp": 1700000000.12, "name": "action_listen", "policy": null,
         "confidence": null, "action_text": null, "hide_rule_turn": false},
        {"event": "user", "timestamp": 1700000001.0, "text": "hi", "parse_data": {"intent": {"name": "greet",
         "confidence": 0.98}, "entities": [], "text": "hi"}, "input_channel": "rest", "message_id": "9f1c", "metadata": {}},
        {"event": "slot", "timestamp": 1700000001.5, "name": "city", "value": "Rome"}
    ]);
    let value = json!({"events": rasa_events, "name": "user-42"}).to_string();
    assert_eq!(
        redis.cmd(&["SET", "tracker:user-42", &value]),
        Resp::Simple("OK".into())
    );

    let s = host(&endpoints(redis.port, "", ""));
    let (_, ids) = s.get("/conversations");
    assert_eq!(ids, json!(["user-42"]));
    let (st, t) = s.get("/conversations/user-42/tracker?include_events=ALL");
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["sender_id"], "user-42");
    // Served as Rasa 3.6 serves them: re-serialised by the event classes (a `user` event's
    // `parse_data` gains `message_id` and `metadata`), nothing of the stored JSON lost.
    let served = t["events"].as_array().unwrap().clone();
    assert_eq!(served.len(), 5);
    for (got, stored) in served.iter().zip(rasa_events.as_array().unwrap()) {
        assert_contains(got, stored);
    }
    assert_eq!(served[3]["parse_data"]["message_id"], "9f1c");
    assert_eq!(t["latest_message"]["intent"]["name"], "greet");
    // Reading did not convert anything.
    assert_eq!(
        redis.cmd(&["TYPE", "tracker:user-42"]).text().unwrap(),
        "string"
    );

    let (st, body) = s.post(
        &events_path("user-42"),
        &json!({"event": "slot", "timestamp": 1700000002.0, "name": "city", "value": "Oslo"}),
    );
    assert_eq!(st, 200, "{body}");
    let events = all_events(&s, "user-42");
    assert_eq!(events.len(), 6);
    assert_eq!(&events[..5], served.as_slice());
    assert_eq!(events[5]["value"], "Oslo");
    // Converted on the first append to the list form, keeping every event as Rasa wrote it.
    assert_eq!(
        redis.cmd(&["TYPE", "tracker:user-42"]).text().unwrap(),
        "list"
    );
    let stored: Vec<Value> = redis
        .cmd(&["LRANGE", "tracker:user-42", "0", "-1"])
        .strings()
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(stored.len(), 6);
    assert_eq!(&stored[..5], rasa_events.as_array().unwrap().as_slice());
    assert_eq!(stored[5], events[5]);

    // A second host (cold cache) sees the same.
    let s2 = host(&endpoints(redis.port, "", ""));
    assert_eq!(all_events(&s2, "user-42"), events);
}

#[test]
fn record_exp_sets_and_refreshes_a_ttl_and_key_prefix_separates_bots() {
    let redis = RedisServer::start();
    let prefixed = host(&endpoints(
        redis.port,
        "  key_prefix: mybot\n  record_exp: 100\n",
        "  key_prefix: mybot\n",
    ));
    let (st, _) = prefixed.post(&events_path("ttl"), &slot(1));
    assert_eq!(st, 200);
    assert_eq!(redis.cmd(&["EXISTS", "mybot:tracker:ttl"]).int(), 1);
    assert_eq!(redis.cmd(&["EXISTS", "tracker:ttl"]).int(), 0);
    let ttl = redis.cmd(&["TTL", "mybot:tracker:ttl"]).int();
    assert!((90..=100).contains(&ttl), "TTL {ttl}");
    std::thread::sleep(Duration::from_millis(2100));
    let aged = redis.cmd(&["TTL", "mybot:tracker:ttl"]).int();
    assert!(aged <= 98, "TTL {aged} after 2 s");
    let (st, _) = prefixed.post(&events_path("ttl"), &slot(2));
    assert_eq!(st, 200);
    let refreshed = redis.cmd(&["TTL", "mybot:tracker:ttl"]).int();
    assert!(
        refreshed > aged,
        "TTL refreshed on write: {refreshed} > {aged}"
    );
    // Nothing of the conversation is left without a TTL.
    for key in redis.cmd(&["KEYS", "mybot:tracker*ttl"]).strings() {
        let ttl = redis.cmd(&["TTL", &key]).int();
        assert!(ttl > 0, "{key} has TTL {ttl}");
    }
    // Lock keys carry the prefix too; nothing unprefixed was written.
    let all = redis.cmd(&["KEYS", "*"]).strings();
    assert!(
        all.iter().all(|k| k.starts_with("mybot:")),
        "every key prefixed: {all:?}"
    );
    let (_, ids) = prefixed.get("/conversations");
    assert_eq!(ids, json!(["ttl"]), "ids without the prefix");

    // A host without the prefix (another bot on the same Redis) sees none of it.
    let plain = host(&endpoints(redis.port, "", ""));
    let (_, ids) = plain.get("/conversations");
    assert_eq!(ids, json!([]));
    let (st, _) = plain.post(&events_path("ttl"), &slot(9));
    assert_eq!(st, 200);
    assert_eq!(
        redis.cmd(&["TTL", "tracker:ttl"]).int(),
        -1,
        "no record_exp, no TTL"
    );
    assert_eq!(slot_values(&all_events(&prefixed, "ttl")), [1, 2]);
    assert_eq!(slot_values(&all_events(&plain, "ttl")), [9]);
}

#[test]
fn two_hosts_sharing_redis_take_200_concurrent_appends_to_one_conversation() {
    let redis = RedisServer::start();
    let yaml = endpoints(redis.port, "", "");
    let hosts = Arc::new([host(&yaml), host(&yaml)]);
    let id = "shared";
    let threads = 8;
    let per_thread = 25;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let hosts = hosts.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                let mut failures = Vec::new();
                for k in 0..per_thread {
                    let value = t * per_thread + k;
                    let s = &hosts[(t + k) % 2];
                    let r = client
                        .post(s.url(&events_path(id)))
                        .json(&slot(value as i64))
                        .send();
                    match r {
                        Ok(r) if r.status() == 200 => {}
                        Ok(r) => failures.push(format!(
                            "{value}: {} {}",
                            r.status(),
                            r.text().unwrap_or_default()
                        )),
                        Err(e) => failures.push(format!("{value}: {e}")),
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    eprintln!(
        "{} appends through two hosts in {:?}",
        threads * per_thread,
        started.elapsed()
    );
    assert!(failures.is_empty(), "failed requests: {failures:#?}");

    let a = all_events(&hosts[0], id);
    let b = all_events(&hosts[1], id);
    assert_eq!(a, b, "both hosts return the same event list");
    let mut values = slot_values(&a);
    assert_eq!(
        values.len(),
        threads * per_thread,
        "no event lost or doubled"
    );
    values.sort();
    assert_eq!(
        values,
        (0..(threads * per_thread) as i64).collect::<Vec<_>>()
    );
    assert_eq!(count_named(&a, "action", "action_session_start"), 1);
    assert_eq!(
        a.iter().filter(|e| e["event"] == "session_started").count(),
        1
    );
    assert_eq!(a[0]["name"], "action_session_start");
    assert_eq!(redis.cmd(&["LLEN", "tracker:shared"]).int(), a.len() as i64);
    // Per-thread order is kept: a thread's requests were sequential.
    let order = slot_values(&a);
    for t in 0..threads as i64 {
        let mine: Vec<i64> = order
            .iter()
            .copied()
            .filter(|v| v / per_thread as i64 == t)
            .collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(
            mine, sorted,
            "thread {t}'s events in the order acknowledged"
        );
    }
    // Lock state is clean once the load is over.
    assert_eq!(redis.cmd_db(1, &["LLEN", "lock_queue:shared"]).int(), 0);
}

/// One request's outcome under load.
struct Outcome {
    value: i64,
    status: u16,
    body: Value,
    elapsed: Duration,
    at: Instant,
}

#[test]
fn redis_restarted_mid_load_returns_503_then_resumes_losing_nothing_acknowledged() {
    // appendfsync always: what Redis acknowledged survives its restart.
    let mut redis = RedisServer::durable();
    // A request whose lock release could not reach Redis leaves its ticket holding the lock
    // (persisted in the AOF) until the lease ends: with the default 60 s lease, requests to
    // that conversation wait up to a minute after Redis is back. A 5 s lease bounds that.
    let yaml = endpoints(redis.port, "", "  lifetime: 5\n");
    let s = Arc::new(host(&yaml));
    let stop = Arc::new(AtomicBool::new(false));
    let bound = Duration::from_secs(30);
    let conversations = 4;
    let workers: Vec<_> = (0..conversations)
        .map(|t| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(bound)
                    .build()
                    .unwrap();
                let id = format!("load-{t}");
                let mut out = Vec::new();
                let mut value = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let r = client
                        .post(s.url(&events_path(&id)))
                        .json(&slot(value))
                        .send();
                    let (status, body) = match r {
                        Ok(r) => {
                            let st = r.status().as_u16();
                            let text = r.text().unwrap_or_default();
                            (
                                st,
                                serde_json::from_str(&text).unwrap_or(Value::String(text)),
                            )
                        }
                        // A timeout (hang beyond the bound) or a broken connection.
                        Err(e) => (0, Value::String(e.to_string())),
                    };
                    out.push(Outcome {
                        value,
                        status,
                        body,
                        elapsed: at.elapsed(),
                        at,
                    });
                    value += 1;
                    if status != 200 {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                (id, out)
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(2));
    let down_at = Instant::now();
    redis.stop();
    std::thread::sleep(Duration::from_secs(3));
    let (st, status) = s.get("/status");
    assert_eq!(st, 200);
    assert_eq!(status["tracker_store"]["health"]["ok"], false, "{status}");
    redis.start_again();
    let up_at = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(String, Vec<Outcome>)> =
        workers.into_iter().map(|w| w.join().unwrap()).collect();

    let mut unavailable = 0;
    for (id, outcomes) in &results {
        for o in outcomes {
            assert!(
                o.status == 200 || o.status == 503,
                "{id} value {}: status {} after {:?}: {}",
                o.value,
                o.status,
                o.elapsed,
                o.body
            );
            assert!(o.elapsed < bound, "{id}: a request took {:?}", o.elapsed);
            if o.status == 503 {
                assert_rasa_error(o.status, &o.body, 503);
                unavailable += 1;
            }
        }
        let acked: BTreeSet<i64> = outcomes
            .iter()
            .filter(|o| o.status == 200)
            .map(|o| o.value)
            .collect();
        let before = outcomes
            .iter()
            .filter(|o| o.at < down_at && o.status == 200)
            .count();
        let after = outcomes
            .iter()
            .filter(|o| o.at > up_at + Duration::from_secs(6) && o.status == 200)
            .count();
        assert!(before > 0, "{id}: no request succeeded before the outage");
        assert!(
            after > 0,
            "{id}: service did not resume after Redis came back"
        );
        let last = outcomes.last().unwrap();
        assert_eq!(last.status, 200, "{id}: last request {}", last.body);

        let stored = slot_values(&all_events(&s, id));
        let unique: BTreeSet<i64> = stored.iter().copied().collect();
        assert_eq!(unique.len(), stored.len(), "{id}: an event stored twice");
        let missing: Vec<&i64> = acked.difference(&unique).collect();
        assert!(
            missing.is_empty(),
            "{id}: acknowledged events lost: {missing:?}"
        );
        let sent: BTreeSet<i64> = outcomes.iter().map(|o| o.value).collect();
        assert!(unique.is_subset(&sent));
        let mut sorted = stored.clone();
        sorted.sort();
        assert_eq!(stored, sorted, "{id}: order kept");
        let counts: BTreeMap<u16, usize> = outcomes.iter().fold(BTreeMap::new(), |mut m, o| {
            *m.entry(o.status).or_default() += 1;
            m
        });
        eprintln!(
            "{id}: {counts:?}, {} stored, max latency {:?}",
            stored.len(),
            outcomes.iter().map(|o| o.elapsed).max().unwrap()
        );
    }
    assert!(
        unavailable > 0,
        "the outage was not observed by any request"
    );
    let (_, status) = s.get("/status");
    assert_eq!(status["tracker_store"]["health"]["ok"], true, "{status}");
}

#[test]
fn redis_down_at_host_start_reports_unhealthy_then_works_when_it_starts() {
    let mut redis = RedisServer::not_started();
    let s = host(&endpoints(redis.port, "", ""));
    let (st, status) = s.get("/status");
    assert_eq!(st, 200, "{status}");
    assert_eq!(status["tracker_store"]["type"], "redis");
    assert_eq!(status["tracker_store"]["health"]["ok"], false, "{status}");
    assert_eq!(status["lock_store"]["health"]["ok"], false, "{status}");

    let at = Instant::now();
    let (st, body) = s.post(&events_path("late"), &slot(1));
    assert_rasa_error(st, &body, 503);
    assert!(at.elapsed() < Duration::from_secs(15), "{:?}", at.elapsed());
    let (st, body) = s.get("/conversations/late/tracker");
    assert_rasa_error(st, &body, 503);

    redis.start_again();
    let body = wait_for(
        "an append after Redis started",
        Duration::from_secs(30),
        || {
            let (st, body) = s.post(&events_path("late"), &slot(2));
            (st == 200).then_some(body)
        },
    );
    assert_eq!(body["sender_id"], "late");
    assert_eq!(slot_values(&all_events(&s, "late")), [2]);
    let (_, status) = s.get("/status");
    assert_eq!(status["tracker_store"]["health"]["ok"], true, "{status}");
    assert_eq!(status["lock_store"]["health"]["ok"], true, "{status}");
}

/// After a restart Redis answers `-LOADING …` to every command until its data is loaded
/// (seconds for a large dataset). That is "unavailable, retry later": 503, never 500.
#[test]
fn redis_loading_its_dataset_gives_503_not_500() {
    let fake = FakeRedis::answering_error("LOADING Redis is loading the dataset in memory");
    let s = host(&endpoints(fake.port, "", ""));
    let (st, body) = s.post(&events_path("loading"), &slot(1));
    assert_rasa_error(st, &body, 503);
    let (st, body) = s.get("/conversations/loading/tracker");
    assert_rasa_error(st, &body, 503);
    let (_, status) = s.get("/status");
    assert_eq!(status["tracker_store"]["health"]["ok"], false, "{status}");
}
