//! JWT and token authentication: never panics on any `Authorization` header or token, an
//! unsigned or badly signed token never authenticates, and a correctly signed token with any
//! claims is decided without panicking.
#![no_main]

use std::sync::OnceLock;

use colloquy::http::auth::Auth;
use http::{header::AUTHORIZATION, HeaderMap, HeaderValue};
use jsonwebtoken::{crypto::sign, Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-secret";

fn auth() -> &'static Auth {
    static A: OnceLock<Auth> = OnceLock::new();
    A.get_or_init(|| Auth::new(None, Some(SECRET.into()), "HS256").expect("HS256 auth"))
}

fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn check(header: &[u8], conversation: Option<&str>) -> Option<bool> {
    let value = HeaderValue::from_bytes(header).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    Some(auth().check(&headers, None, conversation).is_ok())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let conversation = (mode & 4 != 0).then_some("testuser");
    match mode % 4 {
        // Any header value: nothing without the secret may pass.
        0 => {
            assert_ne!(check(rest, conversation), Some(true), "forged: {rest:?}");
        }
        // Any claims, correctly signed with HS256.
        1 => {
            let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
            let message = format!("{header}.{}", b64(rest));
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            let sig = sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
            let _ = check(format!("Bearer {message}.{sig}").as_bytes(), conversation);
        }
        // Any JOSE header and claims (split at the first NUL), correctly signed.
        2 => {
            let mut parts = rest.splitn(2, |&b| b == 0);
            let (h, c) = (parts.next().unwrap_or(b""), parts.next().unwrap_or(b""));
            let message = format!("{}.{}", b64(h), b64(c));
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            let sig = sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
            let _ = check(format!("Bearer {message}.{sig}").as_bytes(), conversation);
        }
        // Claims signed with the wrong secret: never passes.
        _ => {
            let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
            let message = format!("{header}.{}", b64(rest));
            let key = EncodingKey::from_secret(b"not-the-secret");
            let sig = sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
            let token = format!("Bearer {message}.{sig}");
            assert_ne!(check(token.as_bytes(), conversation), Some(true), "{token}");
        }
    }
});
