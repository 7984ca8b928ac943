//! Token and JWT authentication with Rasa 3.6's rules (rasa-http-api §2).
//!
//! Order: a matching `?token=` allows; else a valid JWT whose role passes the scope check
//! allows (a valid JWT with the wrong role is 403); else, with nothing configured, allow;
//! otherwise 401. Secrets are never logged.

use std::collections::HashSet;

use axum::http::{HeaderMap, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::error::ApiError;

const HELP: &str =
    "https://rasa.com/docs/rasa/user-guide/configuring-http-api/#security-considerations";

#[derive(Debug, Error)]
pub enum AuthConfigError {
    #[error("unsupported --jwt-method `{0}`; use one of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, PS256, PS384, PS512")]
    Method(String),
    #[error("--jwt-secret is not a valid PEM public key for {method}: {message}")]
    Key { method: String, message: String },
}

pub struct Auth {
    token: Option<String>,
    jwt: Option<(DecodingKey, Validation)>,
}

#[derive(serde::Deserialize)]
struct Claims {
    user: Option<User>,
}

#[derive(serde::Deserialize)]
struct User {
    username: Option<serde_json::Value>,
    role: Option<serde_json::Value>,
}

impl Auth {
    pub fn none() -> Auth {
        Auth {
            token: None,
            jwt: None,
        }
    }

    /// `jwt_secret`: the HMAC secret, or for asymmetric methods the public key (PEM text or a
    /// path to a PEM file).
    pub fn new(
        token: Option<String>,
        jwt_secret: Option<String>,
        jwt_method: &str,
    ) -> Result<Auth, AuthConfigError> {
        let jwt = match jwt_secret {
            None => None,
            Some(secret) => {
                let alg: Algorithm = jwt_method
                    .to_ascii_uppercase()
                    .parse()
                    .map_err(|_| AuthConfigError::Method(jwt_method.into()))?;
                let pem = || -> Vec<u8> {
                    if !secret.contains("-----BEGIN") {
                        if let Ok(text) = std::fs::read(&secret) {
                            return text;
                        }
                    }
                    secret.clone().into_bytes()
                };
                let key_err = |e: jsonwebtoken::errors::Error| AuthConfigError::Key {
                    method: jwt_method.into(),
                    message: e.to_string(),
                };
                let key = match alg {
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                        DecodingKey::from_secret(secret.as_bytes())
                    }
                    Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512 => DecodingKey::from_rsa_pem(&pem()).map_err(key_err)?,
                    Algorithm::ES256 | Algorithm::ES384 => {
                        DecodingKey::from_ec_pem(&pem()).map_err(key_err)?
                    }
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem()).map_err(key_err)?,
                };
                // Exactly the configured algorithm: a token whose header names another one
                // (HS256 signed with the public key's PEM text against an RS256 server, or
                // `none`) is refused before its signature is looked at.
                let mut validation = Validation::new(alg);
                validation.algorithms = vec![alg];
                // `exp` is checked when present (sanic-jwt's 180 s leeway), not required.
                validation.required_spec_claims = HashSet::new();
                validation.leeway = 180;
                validation.validate_aud = false;
                Some((key, validation))
            }
        };
        Ok(Auth {
            token: token.filter(|t| !t.is_empty()),
            jwt,
        })
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some() || self.jwt.is_some()
    }

    /// Checks a request. `conversation_id`: the route's conversation, for role `user` scoping.
    pub fn check(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        conversation_id: Option<&str>,
    ) -> Result<(), ApiError> {
        if let (Some(expected), Some(given)) = (&self.token, query_token) {
            if token_matches(expected, given) {
                return Ok(());
            }
        }
        if let Some((key, validation)) = &self.jwt {
            if let Some(header) = headers.get(axum::http::header::AUTHORIZATION) {
                let text = header.to_str().unwrap_or("");
                let mut parts = text.splitn(2, ' ');
                let (scheme, token) = (
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or("").trim(),
                );
                if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
                    return Err(unauthenticated(
                        "Authorization header is invalid. Expected 'Bearer <JWT>'.",
                    ));
                }
                return match jsonwebtoken::decode::<Claims>(token, key, validation) {
                    Ok(data) => {
                        if scope_allows(data.claims.user.as_ref(), conversation_id) {
                            Ok(())
                        } else {
                            Err(not_authorized())
                        }
                    }
                    Err(_) => Err(unauthenticated("User is not authenticated.")),
                };
            }
        }
        if !self.enabled() {
            return Ok(());
        }
        Err(unauthenticated("User is not authenticated."))
    }
}

/// Compares the configured token with the given one in constant time. Comparing the raw bytes
/// would still end early on a length mismatch (`subtle` does), telling the token's length;
/// comparing SHA-256 digests takes the same time whatever the given token is.
fn token_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (
        Sha256::digest(expected.as_bytes()),
        Sha256::digest(given.as_bytes()),
    );
    bool::from(a[..].ct_eq(&b[..]))
}

fn scope_allows(user: Option<&User>, conversation_id: Option<&str>) -> bool {
    let Some(user) = user else { return false };
    match user.role.as_ref().and_then(|r| r.as_str()) {
        Some("admin") => true,
        Some("user") => match (
            conversation_id,
            user.username.as_ref().and_then(|u| u.as_str()),
        ) {
            (Some(id), Some(name)) => id == name,
            _ => false,
        },
        _ => false,
    }
}

fn unauthenticated(message: &str) -> ApiError {
    let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "NotAuthenticated", message);
    e.help = Some(HELP);
    e
}

fn not_authorized() -> ApiError {
    let mut e = ApiError::new(
        StatusCode::FORBIDDEN,
        "NotAuthorized",
        "User has insufficient permissions.",
    );
    e.help = Some(HELP);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {t}").parse().unwrap());
        h
    }

    fn hs(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn token_and_jwt_rules() {
        let auth = Auth::new(Some("rasa".into()), Some("core".into()), "HS256").unwrap();
        let none = HeaderMap::new();
        assert!(auth.check(&none, Some("rasa"), None).is_ok());
        assert_eq!(
            auth.check(&none, Some("Rasa"), None).unwrap_err().status,
            401
        );
        assert_eq!(auth.check(&none, None, None).unwrap_err().status, 401);
        let admin = hs(
            json!({"user": {"username": "testadmin", "role": "admin"}}),
            "core",
        );
        let user = hs(
            json!({"user": {"username": "testuser", "role": "user"}}),
            "core",
        );
        assert!(auth.check(&bearer(&admin), None, None).is_ok());
        assert_eq!(
            auth.check(&bearer(&user), None, None).unwrap_err().status,
            403
        );
        assert!(auth.check(&bearer(&user), None, Some("testuser")).is_ok());
        assert_eq!(
            auth.check(&bearer(&user), None, Some("testadmin"))
                .unwrap_err()
                .status,
            403
        );
        let forged = hs(json!({"user": {"username": "x", "role": "admin"}}), "wrong");
        assert_eq!(
            auth.check(&bearer(&forged), None, None).unwrap_err().status,
            401
        );
        let expired = hs(
            json!({"user": {"role": "admin"}, "exp": 1_000_000_000}),
            "core",
        );
        assert_eq!(
            auth.check(&bearer(&expired), None, None)
                .unwrap_err()
                .status,
            401
        );
        // alg: none
        let unsigned = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJ1c2VyIjp7InJvbGUiOiJhZG1pbiJ9fQ"
        );
        assert_eq!(
            auth.check(&bearer(&unsigned), None, None)
                .unwrap_err()
                .status,
            401
        );
        let mut bad = HeaderMap::new();
        bad.insert("authorization", "Token abc".parse().unwrap());
        assert_eq!(auth.check(&bad, None, None).unwrap_err().status, 401);
    }

    #[test]
    fn the_token_comparison_is_by_digest() {
        assert!(token_matches("rasa", "rasa"));
        for other in ["", "r", "ras", "Rasa", "rasa ", "rasarasa", "rasb"] {
            assert!(!token_matches("rasa", other), "{other:?}");
        }
    }

    #[test]
    fn only_the_configured_algorithm_is_accepted() {
        let pem = include_str!("../../../tests/fixtures/jwt/rsa.pub.pem");
        for method in ["RS256", "rs256", "PS384"] {
            let auth = Auth::new(None, Some(pem.into()), method).unwrap();
            let (_, validation) = auth.jwt.as_ref().unwrap();
            assert_eq!(
                validation.algorithms,
                [method.to_ascii_uppercase().parse::<Algorithm>().unwrap()]
            );
        }
        // Algorithm confusion: HS256 keyed with the public key's PEM text.
        let auth = Auth::new(None, Some(pem.into()), "RS256").unwrap();
        let claims = json!({"user": {"username": "x", "role": "admin"}});
        for key in [pem, pem.trim_end()] {
            let confused = hs(claims.clone(), key);
            assert_eq!(
                auth.check(&bearer(&confused), None, None)
                    .unwrap_err()
                    .status,
                401
            );
        }
    }

    #[test]
    fn open_when_nothing_configured() {
        assert!(Auth::none()
            .check(&HeaderMap::new(), None, Some("x"))
            .is_ok());
    }
}
