//! A model server (written here, honouring `If-None-Match`) in front of the `http` model
//! source plugin: start-up pull, ETag handling, a corrupt archive, and a swap under load.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colloquy_blackbox_tests::bots::{hello_bot, rasa_example, train};
use colloquy_blackbox_tests::{cargo_artifact, Server};
use serde_json::json;

/// Serves `(etag, bytes)`; answers 304 when If-None-Match equals the etag.
struct ModelServer {
    port: u16,
    current: Arc<Mutex<(String, Vec<u8>)>>,
    requests: Arc<AtomicUsize>,
}

impl ModelServer {
    fn start(etag: &str, bytes: Vec<u8>) -> ModelServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let current = Arc::new(Mutex::new((etag.to_string(), bytes)));
        let requests = Arc::new(AtomicUsize::new(0));
        let (cur, reqs) = (current.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                reqs.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut if_none_match = None;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("if-none-match:") {
                        if_none_match = Some(v.trim().trim_matches('"').to_string());
                    }
                }
                let (etag, bytes) = cur.lock().unwrap().clone();
                let mut s = stream;
                if if_none_match.as_deref() == Some(etag.to_ascii_lowercase().as_str()) {
                    let _ = s.write_all(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                } else {
                    let head = format!("HTTP/1.1 200 OK\r\netag: \"{etag}\"\r\nfilename: ../../etc/passwd\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", bytes.len());
                    let _ = s.write_all(head.as_bytes());
                    let _ = s.write_all(&bytes);
                }
            }
        });
        ModelServer {
            port,
            current,
            requests,
        }
    }
    fn serve(&self, etag: &str, bytes: Vec<u8>) {
        *self.current.lock().unwrap() = (etag.to_string(), bytes);
    }
}

fn archive(dir: &std::path::Path) -> Vec<u8> {
    let f = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .unwrap();
    std::fs::read(f).unwrap()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn models_are_pulled_swapped_and_corrupt_ones_refused() {
    let so = cargo_artifact("colloquy-plugin-http-model-source", "cdylib");
    let mood = archive(train(&rasa_example("moodbot")).path());
    let cafe = archive(train(&hello_bot()).path());
    let server = ModelServer::start("v1", mood);
    let yaml = format!(
        "models:\n  url: http://127.0.0.1:{}/models/current\n  wait_time_between_pulls: 0.3\n",
        server.port
    );
    let s = Server::builder()
        .arg("--plugin-dir")
        .arg(so.parent().unwrap().to_str().unwrap())
        .endpoints(&yaml)
        .start();
    wait_until("the first model", || s.get("/status").1["is_ready"] == true);
    let first = s.get("/status").1["model_id"].clone();
    // Same ETag: polled again, not reloaded.
    let polled = server.requests.load(Ordering::SeqCst);
    wait_until("two more polls", || {
        server.requests.load(Ordering::SeqCst) >= polled + 2
    });
    assert_eq!(s.get("/status").1["model_id"], first);
    // A corrupt archive under a new ETag: refused, the old model keeps serving.
    server.serve("v2", b"definitely not a model".to_vec());
    let polled = server.requests.load(Ordering::SeqCst);
    wait_until("polls of the corrupt model", || {
        server.requests.load(Ordering::SeqCst) >= polled + 2
    });
    assert_eq!(s.get("/status").1["model_id"], first);
    assert!(s.stderr().contains("cannot be loaded"), "{}", s.stderr());
    // A new model while requests keep coming: none fails.
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = s.port;
    let load: Vec<_> = (0..4)
        .map(|t| {
            let (failures, done) = (failures.clone(), done.clone());
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::new();
                let mut n = 0;
                while !done.load(Ordering::SeqCst) {
                    let r = c
                        .post(format!("http://127.0.0.1:{port}/webhooks/rest/webhook"))
                        .json(&json!({"sender": format!("load{t}-{n}"), "message": "/greet"}))
                        .send();
                    if !r.is_ok_and(|r| r.status() == 200) {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    server.serve("v3", cafe);
    wait_until("the swap", || s.get("/status").1["model_id"] != first);
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::SeqCst);
    let sent: usize = load.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(sent > 20, "only {sent} requests during the swap");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "requests failed during the swap"
    );
    let r = s
        .client
        .get(s.url("/domain"))
        .header("accept", "application/json")
        .send()
        .unwrap();
    assert!(r.text().unwrap().contains("coffee_form"));
    // The `filename` header was never used as a path.
    assert!(!std::path::Path::new("/etc/passwd.tar.gz").exists());
}
