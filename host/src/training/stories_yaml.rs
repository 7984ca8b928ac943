//! Rasa 3 YAML training data: `stories:`, `rules:` (and `nlu:`, handed to `nlu`).

use serde_json::Value;

use super::nlu::{parse_annotated, NluData};
use super::story::{Step, StoryBlock};
use super::DataError;
use crate::domain::parse::yaml_to_json;
use crate::domain::Source;
use crate::policy::StoryEvent;

/// Finds lines in order: each search starts after the previous hit, so repeated steps
/// (`- action: utter_greet` in every story) resolve to the right occurrence.
pub(crate) struct LineCursor<'a> {
    lines: Vec<&'a str>,
    pos: usize,
}

impl<'a> LineCursor<'a> {
    pub fn new(text: &'a str) -> Self {
        LineCursor {
            lines: text.lines().collect(),
            pos: 0,
        }
    }

    /// The 1-based line of the next line containing all `needles` (the current line if none).
    pub fn find(&mut self, needles: &[&str]) -> usize {
        match (self.pos..self.lines.len())
            .find(|&i| needles.iter().all(|n| self.lines[i].contains(n)))
        {
            Some(i) => {
                self.pos = i + 1;
                i + 1
            }
            None => self.pos.max(1),
        }
    }
}

const TOP_KEYS: &[&str] = &[
    "version",
    "stories",
    "rules",
    "nlu",
    "responses",
    "e2e_actions",
    "metadata",
];

/// Parses one YAML training-data file.
pub fn parse(
    src: &Source,
    blocks: &mut Vec<StoryBlock>,
    nlu: &mut NluData,
    warnings: &mut Vec<String>,
) -> Result<(), DataError> {
    let doc = yaml_to_json(&src.text, &src.name).map_err(DataError::from)?;
    let Some(map) = doc.as_object() else {
        return Err(DataError::at(
            &src.name,
            1,
            "a training data file must be a mapping".into(),
        ));
    };
    let mut cur = LineCursor::new(&src.text);
    for (k, v) in map {
        if !TOP_KEYS.contains(&k.as_str()) {
            let line = crate::domain::parse::find_line(&src.text, k).unwrap_or(1);
            return Err(DataError::at(
                &src.name,
                line,
                format!(
                    "unknown key `{k}` in training data (known: {})",
                    TOP_KEYS.join(", ")
                ),
            ));
        }
        match k.as_str() {
            "stories" | "rules" => parse_blocks(src, v, k == "rules", blocks, &mut cur)?,
            "nlu" => super::nlu::parse_yaml_nlu(src, v, nlu)?,
            "responses" => warnings.push(format!(
                "{}: `responses` in training data (retrieval intents) are not used by Colloquy",
                src.name
            )),
            _ => {}
        }
    }
    Ok(())
}

fn parse_blocks(
    src: &Source,
    v: &Value,
    is_rule: bool,
    blocks: &mut Vec<StoryBlock>,
    cur: &mut LineCursor,
) -> Result<(), DataError> {
    let kind = if is_rule { "rule" } else { "story" };
    let list = v.as_array().ok_or_else(|| {
        DataError::at(
            &src.name,
            cur.find(&[if is_rule { "rules:" } else { "stories:" }]),
            format!("`{kind}` items must be a list"),
        )
    })?;
    for item in list {
        let name = item.get(kind).and_then(|n| match n {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        });
        let Some(name) = name else {
            let line = cur.find(&["-"]);
            return Err(DataError::at(
                &src.name,
                line,
                format!("every item under `{kind}s` needs a `{kind}:` name"),
            ));
        };
        let line = cur.find(&[kind, &name]);
        let err = |line: usize, m: String| {
            DataError::at(&src.name, line, format!("{kind} '{name}': {m}"))
        };
        let mut block = StoryBlock::new(&name, &src.name, line, is_rule);
        if let Some(obj) = item.as_object() {
            for key in obj.keys() {
                if !matches!(
                    key.as_str(),
                    "story"
                        | "rule"
                        | "steps"
                        | "condition"
                        | "conversation_start"
                        | "wait_for_user_input"
                        | "metadata"
                ) {
                    return Err(err(line, format!("unknown key `{key}`")));
                }
            }
        }
        block.conversation_start = item
            .get("conversation_start")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        block.wait_for_user_input = item
            .get("wait_for_user_input")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if let Some(cond) = item.get("condition") {
            if !is_rule {
                return Err(err(line, "only rules can have a `condition`".into()));
            }
            for c in cond.as_array().into_iter().flatten() {
                let l = cur.find(&[c
                    .as_object()
                    .and_then(|o| o.keys().next())
                    .map(String::as_str)
                    .unwrap_or("-")]);
                for e in parse_step(c, l, &name).map_err(|m| err(l, m))? {
                    match e {
                        StoryEvent::ActiveLoop(_) | StoryEvent::Slot { .. } => {
                            block.condition.push((e, l))
                        }
                        _ => return Err(err(
                            l,
                            "a rule condition may only contain `active_loop` and `slot_was_set`"
                                .into(),
                        )),
                    }
                }
            }
        }
        let steps = item
            .get("steps")
            .and_then(Value::as_array)
            .ok_or_else(|| err(line, "`steps` (a list) is missing".into()))?;
        let mut seen_event = false;
        for step in steps {
            let key = step
                .as_object()
                .and_then(|o| o.keys().next())
                .map(String::as_str)
                .unwrap_or("-");
            let l = cur.find(&[key]);
            if let Some(cp) = step.get("checkpoint") {
                let cp = cp
                    .as_str()
                    .ok_or_else(|| err(l, "checkpoint names must be strings".into()))?
                    .to_string();
                if is_rule {
                    return Err(err(l, "rules cannot use checkpoints".into()));
                }
                if seen_event {
                    block.end_checkpoints.push(cp);
                } else {
                    block.start_checkpoints.push(cp);
                }
                continue;
            }
            if !block.end_checkpoints.is_empty() {
                // A checkpoint in the middle: what follows continues from it.
                let mut next = StoryBlock::new(&name, &src.name, l, false);
                next.start_checkpoints = block.end_checkpoints.clone();
                blocks.push(std::mem::replace(&mut block, next));
            }
            seen_event = true;
            if let Some(alts) = step.get("or") {
                let alts = alts
                    .as_array()
                    .ok_or_else(|| err(l, "`or` must be a list of steps".into()))?;
                let mut evs = Vec::new();
                for a in alts {
                    evs.extend(parse_step(a, l, &name).map_err(|m| err(l, m))?);
                }
                block.steps.push(Step::Or(evs, l));
                continue;
            }
            for e in parse_step(step, l, &name).map_err(|m| err(l, m))? {
                block.steps.push(Step::Event(e, l));
            }
        }
        blocks.push(block);
    }
    Ok(())
}

/// Entities of a step: `[{cuisine: italian}]`, `[{entity: cuisine, value: italian}]` or `[cuisine]`.
fn parse_entities(v: Option<&Value>) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    for e in v.and_then(Value::as_array).into_iter().flatten() {
        match e {
            Value::String(s) => out.push((s.clone(), Value::Null)),
            Value::Object(o) if o.contains_key("entity") => {
                let name = o
                    .get("entity")
                    .and_then(Value::as_str)
                    .ok_or("`entity` must be a string")?;
                out.push((
                    name.to_string(),
                    o.get("value").cloned().unwrap_or(Value::Null),
                ));
            }
            Value::Object(o) => out.extend(o.iter().map(|(k, v)| (k.clone(), v.clone()))),
            other => return Err(format!("invalid entity {other}")),
        }
    }
    Ok(out)
}

/// One step mapping → the events it stands for.
pub(crate) fn parse_step(
    step: &Value,
    _line: usize,
    _story: &str,
) -> Result<Vec<StoryEvent>, String> {
    let obj = step
        .as_object()
        .ok_or_else(|| format!("a step must be a mapping, not {step}"))?;
    if obj.contains_key("intent") || obj.contains_key("user") {
        let intent = match obj.get("intent") {
            Some(Value::String(s)) => Some(s.clone()),
            None | Some(Value::Null) => None,
            Some(other) => return Err(format!("`intent` must be a name, not {other}")),
        };
        let text = obj.get("user").and_then(Value::as_str).map(str::to_string);
        let mut entities = parse_entities(obj.get("entities"))?;
        let mut plain = text.clone();
        if let Some(t) = &text {
            let (p, ents) = parse_annotated(t);
            if !ents.is_empty() && entities.is_empty() {
                entities = ents
                    .into_iter()
                    .map(|e| (e.entity, Value::String(e.value)))
                    .collect();
            }
            plain = Some(p);
        }
        if intent.is_none() && plain.is_none() {
            return Err("a user step needs `intent` or `user`".into());
        }
        return Ok(vec![StoryEvent::User {
            intent,
            entities,
            text: plain,
        }]);
    }
    if let Some(a) = obj.get("action") {
        let a = a.as_str().ok_or("`action` must be a name")?;
        return Ok(vec![StoryEvent::Action(a.to_string())]);
    }
    if let Some(b) = obj.get("bot") {
        // End-to-end bot text: Rasa treats the text itself as the action.
        let b = b.as_str().ok_or("`bot` must be a text")?;
        return Ok(vec![StoryEvent::Action(b.to_string())]);
    }
    if let Some(l) = obj.get("active_loop") {
        return match l {
            Value::Null => Ok(vec![StoryEvent::ActiveLoop(None)]),
            Value::String(s) => Ok(vec![StoryEvent::ActiveLoop(Some(s.clone()))]),
            other => Err(format!("`active_loop` must be a name or null, not {other}")),
        };
    }
    if let Some(s) = obj.get("slot_was_set") {
        let mut out = Vec::new();
        for item in s.as_array().ok_or("`slot_was_set` must be a list")? {
            match item {
                // A bare name means "set" (to any value); `true` featurises as set for every type.
                Value::String(n) => out.push(StoryEvent::Slot {
                    name: n.clone(),
                    value: Value::Bool(true),
                }),
                Value::Object(o) => {
                    out.extend(o.iter().map(|(k, v)| StoryEvent::Slot {
                        name: k.clone(),
                        value: v.clone(),
                    }));
                }
                other => return Err(format!("invalid slot_was_set entry {other}")),
            }
        }
        return Ok(out);
    }
    Err(format!(
        "unknown step {}; a step is one of intent/user, action, bot, active_loop, slot_was_set, checkpoint, or",
        serde_json::to_string(step).unwrap_or_default()
    ))
}
