//! `${VAR}` expansion in YAML scalars (decisions §2).
//!
//! Unlike Rasa, quoted and unquoted scalars are expanded alike, `${VAR:-default}` is supported,
//! `$$` is a literal `$`, and an unset variable without default is an error naming it.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum EnvError {
    #[error("environment variable `{0}` is not set (use ${{{0}:-default}} to give a default)")]
    Unset(String),
    #[error("unterminated `${{` in {0:?}")]
    Unterminated(String),
    #[error("invalid variable name `{0}`")]
    BadName(String),
}

/// Expands `${NAME}`, `${NAME:-default}` and `$$` in `text`, reading variables with `lookup`.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(close) = body.find('}') else {
                return Err(EnvError::Unterminated(text.to_string()));
            };
            let inner = &body[..close];
            let (name, default) = match inner.find(":-") {
                Some(d) => (&inner[..d], Some(&inner[d + 2..])),
                None => (inner, None),
            };
            if name.is_empty()
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || name.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(EnvError::BadName(name.to_string()));
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(EnvError::Unset(name.to_string())),
            }
            rest = &body[close + 1..];
        } else {
            // A lone `$` (e.g. in a password) stays as it is.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("redis.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_rules() {
        assert_eq!(expand("${HOST}", &look).unwrap(), "redis.local");
        assert_eq!(
            expand("redis://${HOST}:${PORT:-6379}/0", &look).unwrap(),
            "redis://redis.local:6379/0"
        );
        assert_eq!(expand("$$HOST and $5", &look).unwrap(), "$HOST and $5");
        assert_eq!(expand("x${EMPTY}y", &look).unwrap(), "xy");
        assert_eq!(
            expand("${MISSING}", &look),
            Err(EnvError::Unset("MISSING".into()))
        );
        assert!(matches!(
            expand("${HOST", &look),
            Err(EnvError::Unterminated(_))
        ));
        assert!(matches!(expand("${A-B}", &look), Err(EnvError::BadName(_))));
    }
}
