//! Token and JWT rules (rasa-http-api §2) against the real binary.

use colloquy_blackbox_tests::{assert_rasa_error, Server};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

fn jwt(claims: Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn get(s: &Server, path: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut r = s.client.get(format!("http://127.0.0.1:{}{}", s.port, path));
    if let Some(b) = bearer {
        r = r.header("authorization", format!("Bearer {b}"));
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

#[test]
fn token_and_jwt_matrix() {
    let s = Server::builder()
        .arg("--auth-token")
        .arg("rasa")
        .arg("--jwt-secret")
        .arg("core")
        .start();
    assert_eq!(get(&s, "/conversations?token=rasa", None).0, 200);
    let (st, e) = get(&s, "/conversations?token=Rasa", None);
    assert_rasa_error(st, &e, 401);
    assert_eq!(e["reason"], "NotAuthenticated");
    assert_rasa_error(get(&s, "/status", None).0, &get(&s, "/status", None).1, 401);
    let admin = jwt(
        json!({"user": {"username": "testadmin", "role": "admin"}}),
        "core",
    );
    let user = jwt(
        json!({"user": {"username": "testuser", "role": "user"}}),
        "core",
    );
    assert_eq!(get(&s, "/conversations", Some(&admin)).0, 200);
    assert_eq!(get(&s, "/status", Some(&admin)).0, 200);
    let (st, e) = get(&s, "/status", Some(&user));
    assert_rasa_error(st, &e, 403);
    assert_eq!(e["reason"], "NotAuthorized");
    assert_eq!(
        get(&s, "/conversations/testadmin/tracker", Some(&admin)).0,
        200
    );
    assert_eq!(
        get(&s, "/conversations/testuser/tracker", Some(&admin)).0,
        200
    );
    assert_eq!(
        get(&s, "/conversations/testuser/tracker", Some(&user)).0,
        200
    );
    assert_eq!(
        get(&s, "/conversations/testadmin/tracker", Some(&user)).0,
        403
    );
    // Wrong signature, expired, alg none, no role, malformed header: all refused with Rasa's body.
    let forged = jwt(
        json!({"user": {"username": "testadmin", "role": "admin"}}),
        "not-core",
    );
    let expired = jwt(
        json!({"user": {"username": "a", "role": "admin"}, "exp": 1_000_000_000}),
        "core",
    );
    let no_role = jwt(json!({"user": {"username": "a"}}), "core");
    let none_alg = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ1c2VyIjp7InVzZXJuYW1lIjoiYSIsInJvbGUiOiJhZG1pbiJ9fQ.";
    for (token, code) in [
        (forged.as_str(), 401),
        (expired.as_str(), 401),
        (none_alg, 401),
        (no_role.as_str(), 403),
        ("garbage", 401),
    ] {
        let (st, e) = get(&s, "/conversations", Some(token));
        assert_rasa_error(st, &e, code);
    }
    let r = s
        .client
        .get(format!("http://127.0.0.1:{}/status", s.port))
        .header("authorization", "Basic abc")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // A correct token wins over a bad JWT.
    assert_eq!(get(&s, "/status?token=rasa", Some("garbage")).0, 200);
    // Secrets never reach the logs.
    let logs = s.stderr();
    assert!(
        !logs.contains("core") || !logs.contains("--jwt-secret"),
        "{logs}"
    );
    assert!(!logs.contains("rasa\n"));
}

#[test]
fn rasa_core_flag_spellings_work() {
    let s = Server::builder()
        .without_api_flag()
        .arg("--enable_api")
        .arg("--auth_token")
        .arg("tok")
        .arg("-o")
        .arg("out.log")
        .start();
    assert_eq!(get(&s, "/status?token=tok", None).0, 200);
    assert_eq!(get(&s, "/status", None).0, 401);
    let log = std::fs::read_to_string(s.dir.path().join("out.log")).unwrap();
    assert!(log.contains("serving on"), "{log}");
    assert!(!log.contains("tok\""), "the token must not be logged");
}
