//! Schemathesis (PyPI `schemathesis` 4.x, installed by scripts/setup.sh) against a live
//! Colloquy serving the trained hello-bot with `--auth-token`, the REST and the callback
//! channel:
//! (a) Colloquy's own spec (`GET /openapi.json`) with every check;
//! (b) Rasa 3.6.4's spec (`shared/rasa/rasa-3.6.4/spec/rasa.yml`, read in place) with
//!     `not_a_server_error`.
//! Seeded and bounded (examples per operation, phases, a wall-clock bound). The `?token=`
//! query auth goes through the config file (`[auth.openapi.TokenAuth]`, the scheme's name in
//! both specs).
//!
//! Excluded operations, and why:
//! - `DELETE /model` (both specs): it unloads the model, after which every model route
//!   answers 409 and the rest of the run would exercise nothing; `models.rs` tests it.
//! - Rasa's `/model/test/stories`, `/model/test/intents`: not served by Colloquy (404 with
//!   Rasa's error body; checked by `not_a_server_error` anyway, so they stay in run (b)).
//!
//! Also: every operation of the spec is probed on the live server (a 404/405 with reason
//! NotFound/MethodNotAllowed means "not served"), and every method the spec does not give a
//! path must answer 404/405 — the spec and the router cannot drift apart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use colloquy_blackbox_tests::{bots, shared, Server};
use serde_json::Value;

const TOKEN: &str = "st-secret-token";

/// A callback URL that answers 200 to everything (so that the callback channel never fails
/// for lack of a receiver).
fn callback_sink() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.to_ascii_lowercase();
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    port
}

fn start() -> (Server, bots::TrainedModel) {
    let model = bots::train(&bots::hello_bot());
    let sink = callback_sink();
    let creds = format!("rest:\ncallback:\n  url: http://127.0.0.1:{sink}/bot\n");
    let server = Server::builder()
        .token(TOKEN)
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .arg("--credentials")
        .arg("credentials.yml")
        .file("credentials.yml", creds.as_bytes())
        .start();
    (server, model)
}

fn schemathesis_available() -> bool {
    Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

const CONFIG: &str = r#"
[auth.openapi.TokenAuth]
api_key = "${COLLOQUY_ST_TOKEN}"

# The schema cannot say which action names the domain has, which files are loadable models,
# or which YAML is valid training data: a 400 for such schema-valid input is correct.
[[operations]]
include-path = "/conversations/{conversation_id}/execute"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 409]

[[operations]]
include-path = "/model"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403]

[[operations]]
include-path = "/model/train"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403]
"#;

/// A fault of CPython 3.11's parser (fixed in 3.12), hit now and then by hypothesis while it
/// describes a generated value: schemathesis reports it as a runtime error of its own, with
/// every test case passed. Such a run says nothing about the server, so it is run again once.
const PYTHON_AST_FAULT: &str = "AST constructor recursion depth mismatch";

/// Runs `schemathesis run`; panics with its report unless it passes (see [`PYTHON_AST_FAULT`]).
fn run_schemathesis(dir: &Path, location: &str, phases: &str, extra: &[&str], bound: Duration) {
    let (status, report, err) = run_schemathesis_once(dir, location, phases, extra, bound);
    let (status, report, err) = match status {
        Some(s) if !s.success() && report.contains(PYTHON_AST_FAULT) => {
            eprintln!(
                "schemathesis hit CPython's AST fault ({PYTHON_AST_FAULT}); running it again"
            );
            run_schemathesis_once(dir, location, phases, extra, bound)
        }
        _ => (status, report, err),
    };
    match status {
        None => panic!("schemathesis did not finish within {bound:?}:\n{report}\n{err}"),
        Some(s) => assert!(
            s.success(),
            "schemathesis found failures ({s}):\n{report}\n{err}"
        ),
    }
}

/// One `schemathesis run`: its exit status (`None` past `bound`), report and stderr.
fn run_schemathesis_once(
    dir: &Path,
    location: &str,
    phases: &str,
    extra: &[&str],
    bound: Duration,
) -> (Option<std::process::ExitStatus>, String, String) {
    assert!(
        schemathesis_available(),
        "schemathesis is not installed: `python3 -m pip install \"schemathesis>=4,<5\"` \
         (scripts/setup.sh does it)"
    );
    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let started = Instant::now();
    let mut child = Command::new("schemathesis")
        .current_dir(dir)
        .env("COLLOQUY_ST_TOKEN", TOKEN)
        .arg("--config-file")
        .arg(&config)
        .args(["run", location])
        .args([
            "--seed",
            "20261126",
            "--max-examples",
            "12",
            "--phases",
            phases,
            "--exclude-method",
            "DELETE",
            "--workers",
            "2",
            "--no-color",
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "30",
        ])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("schemathesis starts");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = reader.join().unwrap();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    eprintln!(
        "schemathesis {location}: {:.0?}\n{}",
        started.elapsed(),
        report
            .lines()
            .rev()
            .take(25)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    (status, report, err)
}

#[test]
fn schemathesis_colloquy_spec_all_checks_and_rasa_spec_no_server_errors() {
    let (server, _model) = start();
    let work = tempfile::tempdir().unwrap();
    // (a) Colloquy's spec, every check.
    let url = format!("http://127.0.0.1:{}/openapi.json", server.port);
    run_schemathesis(
        work.path(),
        &url,
        "coverage,fuzzing",
        &["--checks", "all"],
        Duration::from_secs(240),
    );
    // (b) Rasa's spec, read in place, against the same live server: no 5xx.
    let rasa = shared("rasa/rasa-3.6.4/spec/rasa.yml");
    let base = format!("http://127.0.0.1:{}", server.port);
    // Fuzzing only: schemathesis 4.x's coverage phase has crashed inside schemathesis itself
    // (a KeyError in its own generator) on Rasa's spec in one CI run out of three.
    run_schemathesis(
        work.path(),
        rasa.to_str().unwrap(),
        "fuzzing",
        &["--url", &base, "--checks", "not_a_server_error"],
        Duration::from_secs(180),
    );
    // The server is still up and nothing it served is lost.
    let (status, _) = server.get("/status");
    assert_eq!(status, 200, "{}", server.stderr());
    assert!(
        !server.stderr().contains("panicked"),
        "the server panicked:\n{}",
        server.stderr()
    );
}

/// A path of the spec with a concrete conversation id.
fn concrete(path: &str) -> String {
    path.replace("{conversation_id}", "probe-user")
}

#[test]
fn every_spec_operation_is_served_and_nothing_else() {
    let (server, _model) = start();
    let (status, spec) = server.get("/openapi.json");
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().expect("paths");
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    let mut described = 0;
    for (path, item) in paths {
        for method in methods {
            let documented = item.get(method.to_ascii_lowercase()).is_some();
            if documented && method == "DELETE" && path == "/model" {
                described += 1;
                continue; // would unload the model; `models.rs` covers it
            }
            let url = server.url(&concrete(path));
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = server
                .client
                .request(m, &url)
                .header("accept", "application/json")
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .unwrap();
            let code = r.status().as_u16();
            let body: Value = serde_json::from_str(&r.text().unwrap()).unwrap_or(Value::Null);
            let reason = body["reason"].as_str().unwrap_or("");
            let not_served =
                matches!(code, 404 | 405) && matches!(reason, "NotFound" | "MethodNotAllowed");
            if documented {
                described += 1;
                assert!(
                    !not_served,
                    "{method} {path} is in the spec but not served: {code} {body}"
                );
            } else {
                assert!(
                    not_served,
                    "{method} {path} is served ({code} {body}) but not in the spec"
                );
            }
        }
    }
    assert!(described >= 28, "only {described} operations described");
}
