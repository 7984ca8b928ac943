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

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/jwt")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn signed(alg: Algorithm, claims: &Value, key_file: &str) -> String {
    let pem = fixture(key_file);
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    encode(&Header::new(alg), claims, &key).unwrap()
}

/// RS256 and ES256 with a PEM public key as `--jwt-secret` (PEM text for RS256, a file path
/// for ES256: the host takes both): the key's own tokens work with the same role rules as
/// HS256; every forgery is 401, including the algorithm-confusion attack (an HS256 token whose
/// HMAC key is the public key's PEM text) and a token of the other asymmetric family.
#[test]
fn asymmetric_jwt_matrix() {
    for (alg, method, key, other_key, foreign) in [
        (
            Algorithm::RS256,
            "RS256",
            "rsa",
            "rsa_other",
            (Algorithm::ES256, "ec"),
        ),
        (
            Algorithm::ES256,
            "ES256",
            "ec",
            "ec_other",
            (Algorithm::RS256, "rsa"),
        ),
    ] {
        let public = fixture(&format!("{key}.pub.pem"));
        let builder = Server::builder().arg("--jwt-method").arg(method);
        let s = if alg == Algorithm::RS256 {
            builder.arg("--jwt-secret").arg(&public).start()
        } else {
            builder
                .file("key.pub.pem", public.as_bytes())
                .arg("--jwt-secret")
                .arg("key.pub.pem")
                .start()
        };
        let private = format!("{key}.key.pem");
        let admin_claims = json!({"user": {"username": "testadmin", "role": "admin"}});
        let admin = signed(alg, &admin_claims, &private);
        let user = signed(
            alg,
            &json!({"user": {"username": "testuser", "role": "user"}}),
            &private,
        );
        assert_eq!(get(&s, "/status", Some(&admin)).0, 200, "{method}");
        assert_eq!(get(&s, "/conversations", Some(&admin)).0, 200, "{method}");
        let (st, e) = get(&s, "/status", Some(&user));
        assert_rasa_error(st, &e, 403);
        assert_eq!(e["reason"], "NotAuthorized");
        assert_eq!(
            get(&s, "/conversations/testuser/tracker", Some(&user)).0,
            200
        );
        let (st, e) = get(&s, "/conversations/testadmin/tracker", Some(&user));
        assert_rasa_error(st, &e, 403);
        let fresh = signed(
            alg,
            &json!({"user": {"username": "a", "role": "admin"}, "exp": 4_000_000_000u64}),
            &private,
        );
        assert_eq!(get(&s, "/status", Some(&fresh)).0, 200, "{method}");

        let other = signed(alg, &admin_claims, &format!("{other_key}.key.pem"));
        let expired = signed(
            alg,
            &json!({"user": {"username": "a", "role": "admin"}, "exp": 1_000_000_000}),
            &private,
        );
        let cross_family = signed(foreign.0, &admin_claims, &format!("{}.key.pem", foreign.1));
        let mut refused = vec![
            ("signed by another key", other),
            ("expired", expired),
            ("other asymmetric family", cross_family),
            (
                "alg none",
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ1c2VyIjp7InVzZXJuYW1lIjoiYSIsInJvbGUiOiJhZG1pbiJ9fQ.".to_string(),
            ),
        ];
        // Algorithm confusion: HMAC keyed with the public key as the server holds it.
        for (i, hmac_key) in [public.as_str(), public.trim_end()].into_iter().enumerate() {
            for hs in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let token = encode(
                    &Header::new(hs),
                    &admin_claims,
                    &EncodingKey::from_secret(hmac_key.as_bytes()),
                )
                .unwrap();
                refused.push((["HMAC with the PEM", "HMAC with the trimmed PEM"][i], token));
            }
        }
        // The valid token's header and payload with the signature removed.
        let (unsigned, _) = admin.rsplit_once('.').unwrap();
        refused.push(("signature stripped", format!("{unsigned}.")));
        for (what, token) in &refused {
            let (st, e) = get(&s, "/status", Some(token));
            assert_eq!(st, 401, "{method}, {what}: {e}");
            assert_rasa_error(st, &e, 401);
            assert_eq!(e["reason"], "NotAuthenticated", "{method}, {what}");
        }
    }
}

/// A server configured for RS256 with a key that is not a PEM public key does not start.
#[test]
fn an_asymmetric_method_needs_a_pem_public_key() {
    let err = Server::builder()
        .arg("--jwt-method")
        .arg("RS256")
        .arg("--jwt-secret")
        .arg("core")
        .try_start()
        .err()
        .expect("must not start");
    assert!(err.contains("PEM"), "{err}");
    assert!(!err.contains("core\n"), "{err}");
}

fn cors_request(s: &Server, method: &str, path: &str, origin: &str) -> reqwest::blocking::Response {
    let mut r = s
        .client
        .request(
            method.parse().unwrap(),
            format!("http://127.0.0.1:{}{}", s.port, path),
        )
        .header("origin", origin);
    if method == "OPTIONS" {
        r = r.header("access-control-request-method", "POST").header(
            "access-control-request-headers",
            "authorization,content-type",
        );
    }
    r.send().unwrap()
}

fn allow_origin(r: &reqwest::blocking::Response) -> Option<String> {
    r.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_string())
}

/// `--cors` (sanic-cors in Rasa 3.6): the listed origin is echoed on a preflight and on a
/// normal request; another origin gets no allow header; `*` echoes any origin; no `--cors`, no
/// CORS header at all.
#[test]
fn cors_origins() {
    let listed = Server::builder()
        .arg("--cors")
        .arg("https://a.example")
        .start();
    let any = Server::builder().arg("--cors").arg("*").start();
    let none = Server::builder().start();
    let events = "/conversations/c/tracker/events";

    let pre = cors_request(&listed, "OPTIONS", events, "https://a.example");
    assert!(pre.status().is_success(), "{}", pre.status());
    assert_eq!(allow_origin(&pre).as_deref(), Some("https://a.example"));
    let methods = pre.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(methods.contains("POST"), "{methods}");
    let headers = pre.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    // A `*` would not cover Authorization: a browser could not send its JWT.
    assert!(headers.contains("authorization"), "{headers}");
    let got = cors_request(&listed, "GET", "/status", "https://a.example");
    assert_eq!(got.status(), 200);
    assert_eq!(allow_origin(&got).as_deref(), Some("https://a.example"));
    let vary = got
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .collect::<Vec<_>>();
    assert!(vary.iter().any(|v| v.contains("origin")), "{vary:?}");
    // Errors carry the header too (the browser can read the 404 body).
    let missing = cors_request(&listed, "GET", "/nope", "https://a.example");
    assert_eq!(missing.status(), 404);
    assert_eq!(allow_origin(&missing).as_deref(), Some("https://a.example"));

    for method in ["OPTIONS", "GET"] {
        let r = cors_request(&listed, method, "/status", "https://b.example");
        assert_eq!(allow_origin(&r), None, "{method} from another origin");
        let r = cors_request(&listed, method, "/status", "https://a.example.evil");
        assert_eq!(allow_origin(&r), None, "{method} from a longer origin");
    }

    for origin in ["https://a.example", "http://localhost:3000"] {
        for method in ["OPTIONS", "GET"] {
            let r = cors_request(&any, method, "/status", origin);
            // sanic-cors echoes the origin (no `send_wildcard`); `*` would do for browsers too.
            let got = allow_origin(&r);
            assert!(
                got.as_deref() == Some(origin) || got.as_deref() == Some("*"),
                "{method} {origin}: {got:?}"
            );
        }
    }

    for method in ["OPTIONS", "GET"] {
        let r = cors_request(&none, method, "/status", "https://a.example");
        let cors: Vec<_> = r
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{method} without --cors: {cors:?}");
    }
}
