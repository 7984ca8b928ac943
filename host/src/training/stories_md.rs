//! rasa_core 0.x Markdown stories:
//!
//! ```text
//! ## story name
//! > checkpoint
//! * intent{"entity": "value"}      (or `* a OR b`)
//!     - action
//!     - slot{"name": "value"}
//!     - form{"name": "form"}
//! ```

use serde_json::{Map, Value};

use super::story::{Step, StoryBlock};
use super::DataError;
use crate::domain::Source;
use crate::policy::StoryEvent;

/// Removes `<!-- … -->` comments (they may span lines; line numbers are kept).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("<!--") {
        out.push_str(&rest[..i]);
        match rest[i..].find("-->") {
            Some(j) => {
                out.extend(rest[i..i + j].chars().filter(|c| *c == '\n'));
                rest = &rest[i + j + 3..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// `name{"k": v}` → (name, object).
fn split_call(s: &str) -> Result<(String, Map<String, Value>), String> {
    match s.find('{') {
        None => Ok((s.trim().to_string(), Map::new())),
        Some(i) => {
            let json = &s[i..];
            let v: Value =
                serde_json::from_str(json).map_err(|e| format!("invalid JSON `{json}`: {e}"))?;
            let obj = v
                .as_object()
                .cloned()
                .ok_or_else(|| format!("`{json}` must be a JSON object"))?;
            Ok((s[..i].trim().to_string(), obj))
        }
    }
}

fn user_event(s: &str) -> Result<StoryEvent, String> {
    let s = s.trim();
    // 0.x allowed a leading `_` (`* _greet`) and an explicit `/`.
    let s = s.trim_start_matches(['_', '/']);
    let (intent, ents) = split_call(s)?;
    if intent.is_empty() || intent.contains(char::is_whitespace) {
        return Err(format!("`{s}` is not an intent name"));
    }
    Ok(StoryEvent::User {
        intent: Some(intent),
        entities: ents.into_iter().collect(),
        text: None,
    })
}

fn action_events(s: &str) -> Result<Vec<StoryEvent>, String> {
    let (name, args) = split_call(s)?;
    Ok(match name.as_str() {
        "slot" => args
            .into_iter()
            .map(|(name, value)| StoryEvent::Slot { name, value })
            .collect(),
        "form" | "active_loop" => {
            let n = args.get("name").cloned().unwrap_or(Value::Null);
            vec![StoryEvent::ActiveLoop(n.as_str().map(str::to_string))]
        }
        "form_validation" => vec![StoryEvent::LoopInterrupted(
            !args
                .get("validate")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        )],
        "restart" => vec![StoryEvent::Restart],
        // Renamed in Rasa 2; the 0.x name still appears in 0.x stories.
        "action_deactivate_form" => vec![StoryEvent::Action("action_deactivate_loop".into())],
        "" => return Err("empty action".into()),
        _ if !args.is_empty() => {
            return Err(format!(
                "unknown event `{name}` (known: slot, form, form_validation, restart)"
            ))
        }
        _ => vec![StoryEvent::Action(name)],
    })
}

/// Parses a Markdown story file.
pub fn parse(src: &Source, blocks: &mut Vec<StoryBlock>) -> Result<(), DataError> {
    let text = strip_comments(&src.text);
    let mut current: Option<StoryBlock> = None;
    let mut seen_event = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        let err = |m: String| DataError::at(&src.name, line, m);
        if let Some(name) = l.strip_prefix("##") {
            blocks.extend(current.take());
            current = Some(StoryBlock::new(name.trim(), &src.name, line, false));
            seen_event = false;
            continue;
        }
        let Some(b) = current.as_mut() else {
            if l.starts_with('#') {
                continue;
            }
            return Err(err(format!(
                "`{l}` appears before the first `## story` heading"
            )));
        };
        if let Some(cp) = l.strip_prefix('>') {
            let cp = cp.trim().to_string();
            if seen_event {
                b.end_checkpoints.push(cp);
            } else {
                b.start_checkpoints.push(cp);
            }
        } else if l
            .strip_prefix(['*', '-'])
            .is_some_and(|r| r.trim_start().starts_with("form:"))
        {
            // 0.x interactive-learning lines handled inside the form ("form: " lines are
            // excluded from training in rasa_core); the slot events around them stay.
            seen_event = true;
        } else if let Some(u) = l.strip_prefix('*') {
            if !b.end_checkpoints.is_empty() {
                let name = b.name.clone();
                let mut next = StoryBlock::new(&name, &src.name, line, false);
                next.start_checkpoints = b.end_checkpoints.clone();
                blocks.push(std::mem::replace(b, next));
            }
            let b = current.as_mut().expect("set above");
            seen_event = true;
            let alts: Vec<&str> = u.split(" OR ").collect();
            if alts.len() > 1 {
                let evs = alts
                    .iter()
                    .map(|a| user_event(a))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                b.steps.push(Step::Or(evs, line));
            } else {
                b.steps.push(Step::Event(user_event(u).map_err(err)?, line));
            }
        } else if let Some(a) = l.strip_prefix('-') {
            seen_event = true;
            for e in action_events(a.trim()).map_err(err)? {
                b.steps.push(Step::Event(e, line));
            }
        } else {
            return Err(err(format!(
                "cannot read `{l}`: a story line starts with `##`, `>`, `*` or `-`"
            )));
        }
    }
    blocks.extend(current);
    Ok(())
}
