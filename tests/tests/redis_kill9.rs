//! A host killed with SIGKILL under load, with the Redis tracker and lock stores (issue 11):
//! every event the host acknowledged with 200 is in Redis, exactly once and in order, when
//! another host starts on the same Redis; an append in flight at the kill may or may not be.
//! Its own test binary, so that the load does not share two cores with other tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use colloquy_blackbox_tests::services::RedisServer;
use colloquy_blackbox_tests::{cargo_artifact, Server};
use serde_json::{json, Value};

fn host(plugin_dir: &std::path::Path, redis_port: u16) -> Server {
    // A lock left held by the killed host ends with its 5 s lease (the default is 60 s).
    let yaml = format!(
        "tracker_store:\n  type: redis\n  url: 127.0.0.1\n  port: {redis_port}\n  socket_timeout: 5\n\
         lock_store:\n  type: redis\n  url: 127.0.0.1\n  port: {redis_port}\n  socket_timeout: 5\n  lifetime: 5\n"
    );
    Server::builder()
        .arg("--plugin-dir")
        .arg(plugin_dir.to_str().unwrap())
        .endpoints(&yaml)
        .start()
}

/// What one client thread saw: the values it acknowledged, in order, and the one in flight
/// when the host died (sent, no answer).
struct Thread {
    conversation: String,
    slot: String,
    acked: Vec<i64>,
    in_flight: Option<i64>,
}

#[test]
fn acknowledged_events_survive_a_kill_9_under_load() {
    let started = Instant::now();
    let plugin_dir: PathBuf = cargo_artifact("colloquy-plugin-redis", "cdylib")
        .parent()
        .unwrap()
        .to_path_buf();
    let redis = RedisServer::start();
    let mut s = host(&plugin_dir, redis.port);
    let port = s.port;
    let stop = Arc::new(AtomicBool::new(false));
    // 3 conversations, 2 threads each: appends to one conversation race through its lock.
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let conversation = format!("kill9-{}", t % 3);
                let slot = format!("t{t}");
                let url =
                    format!("http://127.0.0.1:{port}/conversations/{conversation}/tracker/events");
                let mut acked = Vec::new();
                let mut in_flight = None;
                let mut value = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let event = json!({"event": "slot", "name": slot, "value": value});
                    match client.post(&url).json(&event).send() {
                        Ok(r) if r.status() == 200 => acked.push(value),
                        Ok(r) => panic!(
                            "{slot}: value {value}: status {} before the kill",
                            r.status()
                        ),
                        // The host is gone: this append may or may not have been stored.
                        Err(_) => {
                            in_flight = Some(value);
                            break;
                        }
                    }
                    value += 1;
                }
                Thread {
                    conversation,
                    slot,
                    acked,
                    in_flight,
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(3));
    s.child.kill().expect("SIGKILL");
    let killed_at = Instant::now();
    s.child.wait().unwrap();
    let results: Vec<Thread> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    drop(s);
    for r in &results {
        assert!(
            r.acked.len() >= 3,
            "{}: only {} appends before the kill",
            r.slot,
            r.acked.len()
        );
    }

    let s = host(&plugin_dir, redis.port);
    eprintln!("restarted {:?} after the kill", killed_at.elapsed());
    for conversation in ["kill9-0", "kill9-1", "kill9-2"] {
        let (st, tracker) = s.get(&format!(
            "/conversations/{conversation}/tracker?include_events=ALL"
        ));
        assert_eq!(st, 200, "{tracker}");
        let events = tracker["events"].as_array().unwrap();
        for r in results.iter().filter(|r| r.conversation == conversation) {
            let stored: Vec<i64> = events
                .iter()
                .filter(|e| e["event"] == "slot" && e["name"] == r.slot.as_str())
                .map(|e| e["value"].as_i64().unwrap())
                .collect();
            // Exactly the acknowledged values in order, plus perhaps the one in flight.
            let mut with_in_flight = r.acked.clone();
            with_in_flight.extend(r.in_flight);
            assert!(
                stored == r.acked || stored == with_in_flight,
                "{conversation}/{}: acknowledged {:?} (in flight {:?}), stored {:?}",
                r.slot,
                r.acked,
                r.in_flight,
                stored
            );
        }
        let session_starts = events
            .iter()
            .filter(|e| e["event"] == "action" && e["name"] == "action_session_start")
            .count();
        assert_eq!(session_starts, 1, "{conversation}: one session start");
    }
    // The restarted host appends to each conversation once the killed host's tickets are
    // gone: the holder's lease (5 s) runs out, then the lock goes to the dead waiter (the
    // other thread's ticket: a waiting ticket cannot be told from a dead one until its 60 s
    // wait ends) whose lease starts when the next acquirer promotes it. So at most 2 leases
    // (10 s) from the append's start, with 2 threads per conversation. In parallel, so that
    // the test stays well under 30 s.
    let s = Arc::new(s);
    let appends: Vec<_> = ["kill9-0", "kill9-1", "kill9-2"]
        .into_iter()
        .map(|conversation| {
            let s = s.clone();
            std::thread::spawn(move || {
                let at = Instant::now();
                let (st, body) = s.post(
                    &format!("/conversations/{conversation}/tracker/events"),
                    &json!({"event": "slot", "name": "after", "value": 1}),
                );
                assert_eq!(st, 200, "{body}");
                let took = at.elapsed();
                eprintln!("{conversation}: append after restart took {took:?}");
                assert!(
                    took < Duration::from_secs(2 * 5 + 3),
                    "{conversation}: append after restart took {took:?}"
                );
                let (_, tracker) = s.get(&format!(
                    "/conversations/{conversation}/tracker?include_events=ALL"
                ));
                let last: &Value = tracker["events"].as_array().unwrap().last().unwrap();
                assert_eq!(last["name"], "after");
            })
        })
        .collect();
    for a in appends {
        a.join().unwrap();
    }
    let total: usize = results.iter().map(|r| r.acked.len()).sum();
    eprintln!(
        "{total} acknowledged appends; in flight at the kill: {}; restart and checks took {:?}; test {:?}",
        results.iter().filter(|r| r.in_flight.is_some()).count(),
        killed_at.elapsed(),
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
