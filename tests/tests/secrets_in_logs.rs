//! Secrets never reach the logs (issue 11): a server with `--auth-token`, `--jwt-secret` and
//! the most verbose logging (`--debug`, `RUST_LOG=trace`) gets requests carrying valid and
//! invalid credentials in the query string and in the Authorization header, on good, failing
//! and unknown routes; neither secret nor any token sent appears in its stderr, stdout or log
//! file, nor in a response body. Its own test binary: it reads whole logs.

use colloquy_blackbox_tests::Server;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::io::{Read, Write as _};
use std::net::TcpStream;
use std::time::Duration;

const TOKEN: &str = "SECRET_TOKEN_xyz";
const JWT_SECRET: &str = "JWT_SECRET_abc";

fn jwt(secret: &str, role: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"user": {"username": "u1", "role": role}}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[test]
fn no_secret_or_token_is_logged_even_at_trace_level() {
    for log_file in [false, true] {
        let mut b = Server::builder()
            .arg("--debug")
            .env("RUST_LOG", "trace")
            .arg("--auth-token")
            .arg(TOKEN)
            .arg("--jwt-secret")
            .arg(JWT_SECRET);
        if log_file {
            b = b.arg("--log-file").arg("colloquy.log");
        }
        let s = b.start();
        let base = format!("http://127.0.0.1:{}", s.port);
        let valid_jwt = jwt(JWT_SECRET, "admin");
        let user_jwt = jwt(JWT_SECRET, "user");
        let forged_jwt = jwt("not-the-secret", "admin");
        let wrong_token = format!("{TOKEN}_wrong");
        let mut bodies = Vec::new();
        let mut send = |method: &str, path: &str, bearer: Option<&str>, body: Option<&str>| {
            let mut r = s
                .client
                .request(method.parse().unwrap(), format!("{base}{path}"));
            if let Some(b) = bearer {
                r = r.header("authorization", format!("Bearer {b}"));
            }
            if let Some(b) = body {
                r = r
                    .header("content-type", "application/json")
                    .body(b.to_string());
            }
            let r = r.send().unwrap();
            let status = r.status().as_u16();
            bodies.push((format!("{method} {path}"), r.text().unwrap()));
            status
        };
        let event = r#"{"event": "slot", "name": "n", "value": 1}"#;
        for token in [TOKEN, wrong_token.as_str()] {
            let expect = if token == TOKEN { 200 } else { 401 };
            assert_eq!(
                send("GET", &format!("/status?token={token}"), None, None),
                expect
            );
            assert_eq!(
                send(
                    "POST",
                    &format!("/conversations/c1/tracker/events?token={token}"),
                    None,
                    Some(event)
                ),
                expect
            );
            // Failing requests (bad query, bad body, unknown route, wrong method) log more.
            send(
                "GET",
                &format!("/conversations/c1/tracker?include_events=BAD&token={token}"),
                None,
                None,
            );
            send(
                "GET",
                &format!("/conversations/c1/tracker?until=x&token={token}"),
                None,
                None,
            );
            send(
                "POST",
                &format!("/conversations/c1/tracker/events?token={token}"),
                None,
                Some("{not json"),
            );
            send("GET", &format!("/no/such/route?token={token}"), None, None);
            send("DELETE", &format!("/status?token={token}"), None, None);
            // The token where a JWT is expected.
            assert_eq!(send("GET", "/status", Some(token), None), 401);
            assert_eq!(
                send("GET", &format!("/status?x=1&token={token}&y=2"), None, None),
                expect
            );
        }
        assert_eq!(send("GET", "/status", Some(&valid_jwt), None), 200);
        assert_eq!(send("GET", "/status", Some(&user_jwt), None), 403);
        assert_eq!(
            send("GET", "/conversations/u1/tracker", Some(&user_jwt), None),
            200
        );
        assert_eq!(send("GET", "/status", Some(&forged_jwt), None), 401);
        assert_eq!(
            send(
                "POST",
                "/conversations/c2/tracker/events",
                Some(&valid_jwt),
                Some(event)
            ),
            200
        );
        assert_eq!(
            send(
                "POST",
                "/conversations/c2/tracker/events",
                Some(&forged_jwt),
                Some("{bad")
            ),
            401
        );
        assert_eq!(
            send("GET", &format!("/status?token={valid_jwt}"), None, None),
            401
        );

        // Not HTTP, with the token in it: hyper's parse error is logged at debug.
        {
            let mut raw = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let garbage = format!(
                "G\x01T /status?token={TOKEN} HTTP/1.1\r\nauthorization: Bearer {valid_jwt}\r\n\r\n"
            );
            // The server may answer 400 and close before it read everything.
            let _ = raw.write_all(garbage.as_bytes());
            let mut answer = String::new();
            let _ = raw.read_to_string(&mut answer);
            bodies.push(("garbage".into(), answer));
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut logs = vec![("stderr", s.stderr()), ("stdout", s.stdout())];
        if log_file {
            let path = s.dir.path().join("colloquy.log");
            logs.push(("log file", std::fs::read_to_string(path).unwrap()));
        }
        // Colour codes could split a secret in two.
        for (_, text) in &mut logs {
            *text = strip_ansi(text);
        }
        let all: String = logs.iter().map(|(_, l)| l.as_str()).collect();
        // The debug level is on: a connection that sends garbage is logged at debug.
        assert!(all.contains("serving on"), "{all}");
        assert!(
            all.lines()
                .any(|l| l.contains("DEBUG") && l.contains("connection ended")),
            "expected the garbage connection's debug line:\n{all}"
        );
        let secrets = [
            ("--auth-token", TOKEN.to_string()),
            ("--jwt-secret", JWT_SECRET.to_string()),
            ("the valid JWT", valid_jwt.clone()),
            ("the user JWT", user_jwt.clone()),
            ("the forged JWT", forged_jwt.clone()),
            (
                "the valid JWT's signature",
                valid_jwt.rsplit('.').next().unwrap().to_string(),
            ),
            (
                "the forged JWT's signature",
                forged_jwt.rsplit('.').next().unwrap().to_string(),
            ),
        ];
        for (stream, text) in &logs {
            for (what, secret) in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{what} appears in the {stream} (log file: {log_file}):\n{text}"
                );
            }
        }
        for (request, body) in &bodies {
            for (what, secret) in &secrets {
                assert!(
                    !body.contains(secret.as_str()),
                    "{what} appears in the response to {request}: {body}"
                );
            }
        }
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte (0x40..=0x7e).
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Credentials of the action server endpoint (`token`, a password in the URL, `basic_auth`)
/// stay out of the logs and the responses when the action server cannot be reached: reqwest's
/// error text holds the whole URL, query (`?token=`) included.
#[test]
fn action_server_credentials_are_not_logged_when_it_fails() {
    use colloquy_blackbox_tests::bots::train;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/custom_bot");
    let model = train(&dir);
    // Nothing listens there: connection refused.
    let port = colloquy_blackbox_tests::free_port();
    let endpoints = format!(
        "action_endpoint:\n  url: http://someone:URL_PASSWORD_q2@127.0.0.1:{port}/webhook\n  token: ACTION_TOKEN_q1\n  \
         basic_auth:\n    username: u\n    password: BASIC_PASSWORD_q3\n  timeout: 2\n"
    );
    let s = Server::builder()
        .arg("--debug")
        .env("RUST_LOG", "trace")
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .endpoints(&endpoints)
        .start();
    let (st, reply) = s.post(
        "/webhooks/rest/webhook",
        &json!({"sender": "s1", "message": "/fail_me"}),
    );
    assert_eq!(st, 200, "{reply}");
    let (st2, executed) = s.post("/conversations/s2/execute", &json!({"name": "action_fail"}));
    std::thread::sleep(Duration::from_millis(200));
    let logs = strip_ansi(&format!("{}{}", s.stderr(), s.stdout()));
    // The failure was logged: the check looks at the right place.
    assert!(
        logs.contains("action_fail") || logs.contains("action server"),
        "{logs}"
    );
    for secret in ["ACTION_TOKEN_q1", "URL_PASSWORD_q2", "BASIC_PASSWORD_q3"] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
        for body in [&reply, &executed] {
            assert!(
                !body.to_string().contains(secret),
                "{secret} in a response ({st2}): {body}"
            );
        }
    }
}
