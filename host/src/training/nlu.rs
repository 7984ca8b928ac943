//! NLU training data (Rasa 3 `nlu:` YAML and 0.x `nlu.md`), kept in the model for an NLU
//! component: examples with entity annotations, synonyms, regexes and lookup tables.

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DataError;
use crate::domain::Source;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NluEntity {
    pub start: usize,
    pub end: usize,
    pub value: String,
    pub entity: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NluExample {
    pub text: String,
    pub intent: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub entities: Vec<NluEntity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Synonym {
    /// The canonical value.
    pub value: String,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegexFeature {
    pub name: String,
    pub pattern: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupTable {
    pub name: String,
    pub elements: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NluData {
    pub examples: Vec<NluExample>,
    pub synonyms: Vec<Synonym>,
    pub regexes: Vec<RegexFeature>,
    pub lookups: Vec<LookupTable>,
}

impl NluData {
    pub fn intents(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.examples.iter().map(|e| e.intent.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn add_synonym(&mut self, value: &str, example: &str) {
        if value == example {
            return;
        }
        match self.synonyms.iter_mut().find(|s| s.value == value) {
            Some(s) if !s.examples.iter().any(|e| e == example) => {
                s.examples.push(example.to_string())
            }
            Some(_) => {}
            None => self.synonyms.push(Synonym {
                value: value.to_string(),
                examples: vec![example.to_string()],
            }),
        }
    }

    /// Adds an annotated example (and the synonyms its annotations declare).
    fn add_example(&mut self, intent: &str, annotated: &str) {
        let (text, ents) = parse_annotated(annotated);
        for e in &ents {
            let surface = &text[e.start..e.end];
            if e.value != surface {
                self.add_synonym(&e.value, surface);
            }
        }
        self.examples.push(NluExample {
            text,
            intent: intent.to_string(),
            entities: ents,
        });
    }
}

fn entity_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"\[(?P<text>[^\]]+?)\](?:\((?P<entity>[^:)]+?)(?::(?P<value>[^)]+))?\)|(?P<dict>\{[^}]+?\}))"#)
            .expect("valid regex")
    })
}

/// `show me [chinese](cuisine) food` → plain text and entities. Supports `[v](e)`,
/// `[v](e:synonym)` and `[v]{"entity": "e", "value": "x", "role": "r", "group": "g"}`.
pub fn parse_annotated(s: &str) -> (String, Vec<NluEntity>) {
    let mut text = String::with_capacity(s.len());
    let mut ents = Vec::new();
    let mut last = 0;
    for c in entity_re().captures_iter(s) {
        let m = c.get(0).expect("whole match");
        text.push_str(&s[last..m.start()]);
        let surface = &c["text"];
        let start = text.len();
        text.push_str(surface);
        let end = text.len();
        last = m.end();
        let (entity, value, role, group) = if let Some(d) = c.name("dict") {
            let v: Value = serde_json::from_str(d.as_str()).unwrap_or(Value::Null);
            let g = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
            match g("entity") {
                Some(e) => (
                    e,
                    g("value").unwrap_or_else(|| surface.to_string()),
                    g("role"),
                    g("group"),
                ),
                None => continue,
            }
        } else {
            let entity = c["entity"].to_string();
            let value = c
                .name("value")
                .map_or(surface.to_string(), |v| v.as_str().to_string());
            (entity, value, None, None)
        };
        ents.push(NluEntity {
            start,
            end,
            value,
            entity,
            role,
            group,
        });
    }
    text.push_str(&s[last..]);
    (text, ents)
}

/// The `- item` lines of an `examples: |` block (or a list of `{text: …}` / strings).
fn example_lines(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s
            .lines()
            .filter_map(|l| {
                l.trim_start()
                    .strip_prefix('-')
                    .map(|x| x.trim().to_string())
            })
            .filter(|x| !x.is_empty())
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("text").and_then(Value::as_str).map(str::to_string),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The `nlu:` section of a Rasa 3 YAML file.
pub fn parse_yaml_nlu(src: &Source, v: &Value, nlu: &mut NluData) -> Result<(), DataError> {
    let mut cur = super::stories_yaml::LineCursor::new(&src.text);
    let items = v.as_array().ok_or_else(|| {
        DataError::at(
            &src.name,
            cur.find(&["nlu:"]),
            "`nlu` must be a list".into(),
        )
    })?;
    for item in items {
        let get = |k: &str| item.get(k).and_then(Value::as_str);
        let examples = example_lines(item.get("examples"));
        if let Some(intent) = get("intent") {
            cur.find(&["intent:", intent]);
            for ex in examples {
                nlu.add_example(intent, &ex);
            }
        } else if let Some(value) = get("synonym") {
            for ex in examples {
                nlu.add_synonym(value, &ex);
            }
        } else if let Some(name) = get("regex") {
            let line = cur.find(&["regex:", name]);
            for ex in examples {
                Regex::new(&ex).map_err(|e| {
                    DataError::at(
                        &src.name,
                        line,
                        format!("regex `{name}`: invalid pattern `{ex}`: {e}"),
                    )
                })?;
                nlu.regexes.push(RegexFeature {
                    name: name.to_string(),
                    pattern: ex,
                });
            }
        } else if let Some(name) = get("lookup") {
            nlu.lookups.push(LookupTable {
                name: name.to_string(),
                elements: examples,
            });
        } else {
            let line = cur.find(&["-"]);
            return Err(DataError::at(
                &src.name,
                line,
                format!("an `nlu` item needs intent, synonym, regex or lookup; got {item}"),
            ));
        }
    }
    Ok(())
}

/// A 0.x Markdown NLU file (`## intent:greet` sections of `- example` lines).
pub fn parse_md(src: &Source, nlu: &mut NluData) -> Result<(), DataError> {
    let mut section: Option<(String, String)> = None;
    for (i, raw) in src.text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with("<!--") {
            continue;
        }
        if let Some(h) = l.strip_prefix("##") {
            let h = h.trim();
            let (kind, name) = h
                .split_once(':')
                .ok_or_else(|| DataError::at(&src.name, i + 1, format!("`## {h}`: expected `## intent:name`, `## synonym:name`, `## regex:name` or `## lookup:name`")))?;
            let kind = kind.trim().to_string();
            if !matches!(kind.as_str(), "intent" | "synonym" | "regex" | "lookup") {
                return Err(DataError::at(
                    &src.name,
                    i + 1,
                    format!("unknown NLU section type `{kind}`"),
                ));
            }
            section = Some((kind, name.trim().to_string()));
            continue;
        }
        let Some(item) = l.strip_prefix('-') else {
            continue;
        };
        let item = item.trim();
        let Some((kind, name)) = &section else {
            return Err(DataError::at(
                &src.name,
                i + 1,
                "example before the first `## intent:` heading".into(),
            ));
        };
        match kind.as_str() {
            "intent" => nlu.add_example(name, item),
            "synonym" => nlu.add_synonym(name, item),
            "regex" => nlu.regexes.push(RegexFeature {
                name: name.clone(),
                pattern: item.to_string(),
            }),
            _ => match nlu.lookups.iter_mut().find(|t| &t.name == name) {
                Some(t) => t.elements.push(item.to_string()),
                None => nlu.lookups.push(LookupTable {
                    name: name.clone(),
                    elements: vec![item.to_string()],
                }),
            },
        }
    }
    Ok(())
}

/// Whether a Markdown file is NLU data rather than stories.
pub fn is_md_nlu(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        ["## intent:", "## synonym:", "## regex:", "## lookup:"]
            .iter()
            .any(|p| l.starts_with(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_annotation_syntaxes() {
        let (t, e) = parse_annotated(
            r#"fly from [Berlin]{"entity": "city", "role": "from"} to [NYC](city:New York)"#,
        );
        assert_eq!(t, "fly from Berlin to NYC");
        assert_eq!(
            (e[0].start, e[0].end, e[0].role.as_deref()),
            (9, 15, Some("from"))
        );
        assert_eq!(&t[e[1].start..e[1].end], "NYC");
        assert_eq!(e[1].value, "New York");
    }

    #[test]
    fn markdown_nlu() {
        let src = Source { name: "nlu.md".into(), text: "## intent:greet\n- hi [Anna](name)\n## synonym:NYC\n- new york\n## regex:zip\n- [0-9]{5}\n## lookup:city\n- Rome\n".into() };
        let mut n = NluData::default();
        parse_md(&src, &mut n).unwrap();
        assert_eq!(n.examples[0].entities[0].value, "Anna");
        assert_eq!(n.synonyms[0].examples, ["new york"]);
        assert_eq!(n.regexes.len(), 1);
        assert_eq!(n.lookups[0].elements, ["Rome"]);
    }
}
