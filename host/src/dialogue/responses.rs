//! Rendering `utter_*` responses: conditional variations, channel-specific ones, a random
//! choice among those that apply, and `{slot}` interpolation.

use rand::seq::IndexedRandom;
use serde_json::{Map, Value};

use crate::domain::Domain;
use crate::engine::TrackerState;

/// Picks and renders a variation of response `name`; `None` when the domain has no such
/// response or no variation applies.
pub fn render(
    domain: &Domain,
    name: &str,
    state: &TrackerState,
    channel: Option<&str>,
    extra: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    let variations = domain.response(name)?;
    let applies = |v: &&Value| {
        let cond_ok = match v.get("condition").and_then(Value::as_array) {
            None => true,
            Some(conds) => conds.iter().all(|c| {
                let slot = c.get("name").and_then(Value::as_str).unwrap_or("");
                state.slot(slot) == Some(c.get("value").unwrap_or(&Value::Null))
            }),
        };
        cond_ok
    };
    let channel_of = |v: &Value| v.get("channel").and_then(Value::as_str).map(str::to_string);
    // Conditional variations that match win over unconditional ones (Rasa 3); among those,
    // channel-specific ones for this channel win over channel-less ones.
    let conditional: Vec<&Value> = variations
        .iter()
        .filter(|v| v.get("condition").is_some())
        .filter(applies)
        .collect();
    let pool: Vec<&Value> = if conditional.is_empty() {
        variations
            .iter()
            .filter(|v| v.get("condition").is_none())
            .collect()
    } else {
        conditional
    };
    let for_channel: Vec<&Value> = pool
        .iter()
        .copied()
        .filter(|v| channel.is_some() && channel_of(v).as_deref() == channel)
        .collect();
    let pool: Vec<&Value> = if for_channel.is_empty() {
        pool.into_iter()
            .filter(|v| channel_of(v).is_none())
            .collect()
    } else {
        for_channel
    };
    let chosen = pool.choose(&mut rand::rng())?;
    let mut out = chosen.as_object().cloned().unwrap_or_default();
    out.remove("condition");
    out.remove("channel");
    // The extra variables win over slots of the same name. Looked up in place: most
    // responses have no `{` at all, and copying every slot per response showed in P2.
    let var = |name: &str| extra.get(name).or_else(|| state.slot(name));
    for value in out.values_mut() {
        interpolate(value, &var);
    }
    Some(out)
}

/// Replaces `{name}` in every string by the variable's value (strings as they are, other
/// values as JSON); unknown names stay as written, as in Rasa.
fn interpolate<'v>(value: &mut Value, var: &impl Fn(&str) -> Option<&'v Value>) {
    match value {
        Value::String(s) if s.contains('{') => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let after = &rest[open + 1..];
                match after.find('}') {
                    Some(close)
                        if after[..close]
                            .chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                            && close > 0 =>
                    {
                        let key = &after[..close];
                        match var(key) {
                            Some(Value::String(v)) => out.push_str(v),
                            // Python's str(), which Rasa's templates use.
                            Some(Value::Null) => out.push_str("None"),
                            Some(Value::Bool(true)) => out.push_str("True"),
                            Some(Value::Bool(false)) => out.push_str("False"),
                            Some(v) => out.push_str(&v.to_string()),
                            None => {
                                out.push('{');
                                out.push_str(key);
                                out.push('}');
                            }
                        }
                        rest = &after[close + 1..];
                    }
                    _ => {
                        out.push('{');
                        rest = after;
                    }
                }
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(items) => items.iter_mut().for_each(|i| interpolate(i, var)),
        Value::Object(m) => m.values_mut().for_each(|v| interpolate(v, var)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn interpolation() {
        let vars: Map<String, Value> =
            serde_json::from_value(json!({"name": "Ada", "n": 3, "x": null})).unwrap();
        let mut v = json!({"text": "Hi {name}, {n} {x} {unknown} {not a var}", "buttons": [{"title": "{name}"}]});
        interpolate(&mut v, &|k: &str| vars.get(k));
        assert_eq!(v["text"], "Hi Ada, 3 None {unknown} {not a var}");
        assert_eq!(v["buttons"][0]["title"], "Ada");
    }
}
