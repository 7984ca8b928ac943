//! Reading domain files: YAML → merged mapping → validated `Domain`.
//!
//! serde_norway gives positions only for syntax errors, so for semantic errors the line is
//! found by searching the offending name in the source text (first occurrence as a key or
//! list item). That is what a user needs to find the mistake.

use std::path::Path;

use serde_json::{Map, Value};

use super::responses::normalise_variation;
use super::slots::{MappingCondition, SlotKind, SlotMapping, MAPPING_TYPES};
use super::{Domain, Entity, EntityFilter, Form, Intent, SessionConfig, Slot};

/// One input file: its display name (path) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> std::io::Result<Source> {
        Ok(Source {
            name: path.display().to_string(),
            text: std::fs::read_to_string(path)?,
        })
    }
}

/// A domain that cannot be used, with the file and (when known) the line at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct DomainError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

const DOMAIN_KEYS: &[&str] = &[
    "version",
    "intents",
    "entities",
    "slots",
    "responses",
    "templates",
    "actions",
    "forms",
    "session_config",
    "config",
    "e2e_actions",
];

/// The 1-based line of the first line that contains `needle` as a key or list item, falling
/// back to any occurrence.
pub(crate) fn find_line(text: &str, needle: &str) -> Option<usize> {
    let as_key = |l: &str| {
        let t = l.trim_start().trim_start_matches("- ").trim_start();
        let t = t.trim_start_matches(['"', '\'']);
        t.starts_with(needle)
            && t[needle.len()..]
                .trim_start_matches(['"', '\''])
                .trim_start()
                .starts_with([':', '#'])
            || t.trim_end().trim_end_matches(['"', '\'']) == needle
    };
    text.lines()
        .position(as_key)
        .or_else(|| text.lines().position(|l| l.contains(needle)))
        .map(|i| i + 1)
}

/// Parses YAML text into JSON, turning syntax errors into file:line errors.
pub(crate) fn yaml_to_json(text: &str, file: &str) -> Result<Value, DomainError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_norway::from_str::<Value>(text).map_err(|e| DomainError {
        file: file.to_string(),
        line: e.location().map(|l| l.line()),
        message: format!("invalid YAML: {e}"),
    })
}

/// Reports an error at the first source that mentions `needle`.
fn err_at(sources: &[Source], needle: &str, message: String) -> DomainError {
    for s in sources {
        if let Some(line) = find_line(&s.text, needle) {
            return DomainError {
                file: s.name.clone(),
                line: Some(line),
                message,
            };
        }
    }
    DomainError {
        file: sources.first().map(|s| s.name.clone()).unwrap_or_default(),
        line: None,
        message,
    }
}

impl Domain {
    /// Loads a domain file, or every `.yml`/`.yaml` file of a folder (recursively, sorted).
    pub fn load(path: &Path) -> Result<Domain, DomainError> {
        let io = |e: std::io::Error| DomainError {
            file: path.display().to_string(),
            line: None,
            message: e.to_string(),
        };
        let mut sources = Vec::new();
        if path.is_dir() {
            let mut files = Vec::new();
            collect_yaml_files(path, &mut files).map_err(io)?;
            for f in files {
                sources.push(Source::read(&f).map_err(io)?);
            }
        } else {
            sources.push(Source::read(path).map_err(io)?);
        }
        Domain::from_sources(&sources)
    }

    /// Parses one domain document.
    pub fn from_yaml(text: &str, file: &str) -> Result<Domain, DomainError> {
        Domain::from_sources(&[Source {
            name: file.to_string(),
            text: text.to_string(),
        }])
    }

    /// The domain stored in a model (`to_json` output).
    pub fn from_json(value: &Value) -> Result<Domain, DomainError> {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        let src = [Source {
            name: "domain.json".into(),
            text,
        }];
        let map = value.as_object().cloned().unwrap_or_default();
        build(&map, &src)
    }

    /// Merges several domain files as Rasa does (lists: union; mappings: the first file to
    /// define a key wins) and validates the result.
    pub fn from_sources(sources: &[Source]) -> Result<Domain, DomainError> {
        let mut merged = Map::new();
        for s in sources {
            let v = yaml_to_json(&s.text, &s.name)?;
            let map = match v {
                Value::Object(m) => m,
                Value::Null => Map::new(),
                _ => {
                    return Err(DomainError {
                        file: s.name.clone(),
                        line: Some(1),
                        message: "a domain file must be a mapping".into(),
                    })
                }
            };
            for (k, v) in map {
                if !DOMAIN_KEYS.contains(&k.as_str()) {
                    return Err(DomainError {
                        file: s.name.clone(),
                        line: find_line(&s.text, &k),
                        message: format!(
                            "unknown domain key `{k}` (known: {})",
                            DOMAIN_KEYS.join(", ")
                        ),
                    });
                }
                merge_value(&mut merged, k, v);
            }
        }
        build(&merged, sources)
    }
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_yaml_files(&p, out)?;
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
            out.push(p);
        }
    }
    Ok(())
}

/// The name of a list item that is either `name` or `{name: {...}}`.
fn item_name(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(m) if m.len() == 1 => m.keys().next().map(String::as_str),
        _ => None,
    }
}

fn merge_value(into: &mut Map<String, Value>, key: String, value: Value) {
    match (into.get_mut(&key), value) {
        (None, v) => {
            into.insert(key, v);
        }
        (Some(Value::Array(a)), Value::Array(b)) => {
            for item in b {
                let dup = a.iter().any(|x| {
                    x == &item || (item_name(x).is_some() && item_name(x) == item_name(&item))
                });
                if !dup {
                    a.push(item);
                }
            }
        }
        (Some(Value::Object(a)), Value::Object(b)) => {
            for (k, v) in b {
                a.entry(k).or_insert(v);
            }
        }
        (Some(slot @ Value::Null), v) => *slot = v,
        _ => {}
    }
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| item_name(x).map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn build(map: &Map<String, Value>, sources: &[Source]) -> Result<Domain, DomainError> {
    let legacy = map.contains_key("templates") || map.get("forms").is_some_and(Value::is_array);
    let mut d = Domain {
        version: map
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("3.1")
            .to_string(),
        legacy,
        store_entities_as_slots: true,
        ..Domain::default()
    };

    // Intents: `name` or `{name: {use_entities, ignore_entities, triggers}}`.
    for item in map
        .get("intents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = item_name(item)
            .ok_or_else(|| err_at(sources, "intents", format!("invalid intent entry {item}")))?
            .to_string();
        let props = match item {
            Value::Object(m) => m
                .values()
                .next()
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            _ => Map::new(),
        };
        let use_entities = match (props.get("use_entities"), props.get("ignore_entities")) {
            (Some(_), Some(_)) => {
                return Err(err_at(
                    sources,
                    &name,
                    format!("intent `{name}` has both use_entities and ignore_entities"),
                ))
            }
            (Some(Value::Bool(false)), _) => EntityFilter::Only(Vec::new()),
            (Some(Value::Array(_)), _) => EntityFilter::Only(str_list(props.get("use_entities"))),
            (None, Some(_)) => EntityFilter::Ignore(str_list(props.get("ignore_entities"))),
            _ => EntityFilter::All,
        };
        let triggers = props
            .get("triggers")
            .and_then(Value::as_str)
            .map(str::to_string);
        if d.intent(&name).is_some() {
            continue;
        }
        d.intents.push(Intent {
            name,
            use_entities,
            triggers,
            properties: props,
        });
    }

    for item in map
        .get("entities")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = item_name(item)
            .ok_or_else(|| err_at(sources, "entities", format!("invalid entity entry {item}")))?
            .to_string();
        let props = match item {
            Value::Object(m) => m
                .values()
                .next()
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            _ => Map::new(),
        };
        d.entities.push(Entity {
            roles: str_list(props.get("roles")),
            groups: str_list(props.get("groups")),
            influence_conversation: props
                .get("influence_conversation")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            name,
            properties: props,
        });
    }

    // Responses (`templates:` in 0.x).
    let responses = map.get("responses").or_else(|| map.get("templates"));
    if let Some(r) = responses {
        let r = r
            .as_object()
            .ok_or_else(|| err_at(sources, "responses", "`responses` must be a mapping".into()))?;
        for (name, variations) in r {
            let list = variations.as_array().ok_or_else(|| {
                err_at(
                    sources,
                    name,
                    format!("response `{name}` must be a list of variations"),
                )
            })?;
            let mut out = Vec::new();
            for v in list {
                out.push(
                    normalise_variation(v)
                        .map_err(|m| err_at(sources, name, format!("response `{name}`: {m}")))?,
                );
            }
            d.responses.push((name.clone(), out));
        }
    }

    for item in map
        .get("actions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = item_name(item)
            .ok_or_else(|| err_at(sources, "actions", format!("invalid action entry {item}")))?
            .to_string();
        if let Value::Object(m) = item {
            if m.values()
                .next()
                .and_then(|p| p.get("send_domain"))
                .and_then(Value::as_bool)
                == Some(true)
            {
                d.send_domain_actions.push(name.clone());
            }
        }
        // 0.x listed the form-deactivation action by its old name.
        if !d.actions.contains(&name) && !super::DEFAULT_ACTIONS.contains(&name.as_str()) {
            d.actions.push(name);
        }
    }

    // Slots.
    if let Some(s) = map.get("slots") {
        let s = s
            .as_object()
            .ok_or_else(|| err_at(sources, "slots", "`slots` must be a mapping".into()))?;
        for (name, def) in s {
            d.slots.push(parse_slot(name, def, legacy, &d, sources)?);
        }
    }

    // Forms: 3.x `{name: {required_slots: [...]}}`, 0.x `[name, ...]`.
    match map.get("forms") {
        Some(Value::Array(list)) => {
            for f in list {
                let name = item_name(f).unwrap_or_default().to_string();
                d.forms.push(Form {
                    name,
                    required_slots: Vec::new(),
                    ignored_intents: Vec::new(),
                    definition: Map::new(),
                });
            }
        }
        Some(Value::Object(forms)) => {
            for (name, def) in forms {
                let def_map = def.as_object().cloned().unwrap_or_default();
                let required_slots = match def_map.get("required_slots") {
                    Some(Value::Array(_)) => str_list(def_map.get("required_slots")),
                    // Rasa 2.x: slot name → mappings.
                    Some(Value::Object(m)) => m.keys().cloned().collect(),
                    None | Some(Value::Null) => Vec::new(),
                    Some(_) => {
                        return Err(err_at(
                            sources,
                            name,
                            format!("form `{name}`: required_slots must be a list"),
                        ))
                    }
                };
                for rs in &required_slots {
                    if d.slot(rs).is_none() {
                        return Err(err_at(
                            sources,
                            rs,
                            format!("form `{name}` requires slot `{rs}`, which is not defined under `slots`"),
                        ));
                    }
                }
                d.forms.push(Form {
                    name: name.clone(),
                    required_slots,
                    ignored_intents: str_list(def_map.get("ignored_intents")),
                    definition: def_map,
                });
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(err_at(
                sources,
                "forms",
                "`forms` must be a mapping (or a list in 0.x)".into(),
            ))
        }
    }

    if let Some(sc) = map.get("session_config").and_then(Value::as_object) {
        let mut c = SessionConfig::default();
        if let Some(t) = sc.get("session_expiration_time") {
            c.session_expiration_time = t.as_f64().ok_or_else(|| {
                err_at(
                    sources,
                    "session_expiration_time",
                    "session_expiration_time must be a number".into(),
                )
            })?;
        }
        if let Some(b) = sc.get("carry_over_slots_to_new_session") {
            c.carry_over_slots_to_new_session = b.as_bool().ok_or_else(|| {
                err_at(
                    sources,
                    "carry_over_slots_to_new_session",
                    "carry_over_slots_to_new_session must be true or false".into(),
                )
            })?;
        }
        d.session_config = c;
    }
    if let Some(b) = map
        .get("config")
        .and_then(|c| c.get("store_entities_as_slots"))
        .and_then(Value::as_bool)
    {
        d.store_entities_as_slots = b;
    }
    d.e2e_actions = str_list(map.get("e2e_actions"));

    // Implicit slots, as Rasa 3.6 adds them.
    if !d.forms.is_empty() && d.slot("requested_slot").is_none() {
        d.slots
            .push(Slot::implicit("requested_slot", SlotKind::Text));
    }
    if d.slot("session_started_metadata").is_none() {
        d.slots
            .push(Slot::implicit("session_started_metadata", SlotKind::Any));
    }

    // Mappings must name things the domain has.
    for slot in &d.slots {
        for m in &slot.mappings {
            if let Some(e) = &m.entity {
                if !d.entities.iter().any(|x| &x.name == e) {
                    return Err(err_at(
                        sources,
                        &slot.name,
                        format!("slot `{}` is mapped from entity `{e}`, which is not listed under `entities`", slot.name),
                    ));
                }
            }
        }
    }
    Ok(d)
}

fn parse_slot(
    name: &str,
    def: &Value,
    legacy: bool,
    d: &Domain,
    sources: &[Source],
) -> Result<Slot, DomainError> {
    let err = |m: String| err_at(sources, name, format!("slot `{name}`: {m}"));
    let def = def
        .as_object()
        .ok_or_else(|| err("the definition must be a mapping".into()))?;
    let ty = def
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| err("`type` is missing".into()))?;
    let short = ty.rsplit('.').next().unwrap_or(ty);
    let (kind, default_influence) = match short.to_lowercase().as_str() {
        "text" | "textslot" => (SlotKind::Text, true),
        "bool" | "booleanslot" => (SlotKind::Bool, true),
        "categorical" | "categoricalslot" => {
            let values = def
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| err("a categorical slot needs `values`".into()))?
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            (SlotKind::Categorical { values }, true)
        }
        "float" | "floatslot" => {
            let min = def.get("min_value").map(|v| v.as_f64().ok_or_else(|| err("min_value must be a number".into()))).transpose()?;
            let max = def.get("max_value").map(|v| v.as_f64().ok_or_else(|| err("max_value must be a number".into()))).transpose()?;
            let (min, max) = (min.unwrap_or(0.0), max.unwrap_or(1.0));
            if min > max {
                return Err(err(format!("min_value {min} is greater than max_value {max}")));
            }
            (SlotKind::Float { min, max }, true)
        }
        "list" | "listslot" => (SlotKind::List, true),
        "any" | "anyslot" => (SlotKind::Any, false),
        "unfeaturized" | "unfeaturizedslot" | "data" | "dataslot" => (SlotKind::Any, false),
        _ => {
            return Err(err(format!(
                "unknown slot type `{ty}` (known: text, bool, categorical, float, list, any; 0.x: unfeaturized)"
            )))
        }
    };
    let influence = match def.get("influence_conversation") {
        Some(v) => v
            .as_bool()
            .ok_or_else(|| err("influence_conversation must be true or false".into()))?,
        None => default_influence,
    };
    if influence && kind == SlotKind::Any && def.contains_key("influence_conversation") {
        return Err(err("an `any` slot cannot influence the conversation".into()));
    }
    let initial_value = def.get("initial_value").cloned().unwrap_or(Value::Null);
    let mappings = match def.get("mappings") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|m| parse_mapping(m).map_err(&err))
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Null) | None => {
            // 0.x auto-fill: a slot is filled from the entity of the same name.
            let auto_fill = def
                .get("auto_fill")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if (legacy || !def.contains_key("mappings"))
                && auto_fill
                && d.entities.iter().any(|e| e.name == name)
            {
                vec![SlotMapping {
                    mapping_type: "from_entity".into(),
                    entity: Some(name.to_string()),
                    role: None,
                    group: None,
                    intent: Vec::new(),
                    not_intent: Vec::new(),
                    value: None,
                    action: None,
                    conditions: Vec::new(),
                }]
            } else {
                Vec::new()
            }
        }
        Some(_) => return Err(err("`mappings` must be a list".into())),
    };
    // Re-emit 0.x definitions in the 3.x shape so the stored domain is a valid 3.x domain.
    let definition = if legacy || !def.contains_key("mappings") {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(kind.type_name().into()));
        if !initial_value.is_null() {
            m.insert("initial_value".into(), initial_value.clone());
        }
        m.insert("influence_conversation".into(), Value::Bool(influence));
        if let SlotKind::Categorical { values } = &kind {
            m.insert("values".into(), serde_json::json!(values));
        }
        if let SlotKind::Float { min, max } = &kind {
            m.insert("min_value".into(), serde_json::json!(min));
            m.insert("max_value".into(), serde_json::json!(max));
        }
        m.insert(
            "mappings".into(),
            Value::Array(mappings.iter().map(mapping_json).collect()),
        );
        m
    } else {
        def.clone()
    };
    Ok(Slot {
        name: name.to_string(),
        initial_value,
        kind,
        influence_conversation: influence,
        mappings,
        definition: Some(definition),
    })
}

/// A mapping in the 3.x shape, with every field `parse_mapping` reads, so that the domain a
/// model stores loads back the same (fuzzing found `value` and the filters dropped).
fn mapping_json(m: &SlotMapping) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), Value::String(m.mapping_type.clone()));
    let strings = [
        ("entity", &m.entity),
        ("role", &m.role),
        ("group", &m.group),
    ];
    for (key, v) in strings {
        if let Some(v) = v {
            o.insert(key.into(), Value::String(v.clone()));
        }
    }
    if !m.intent.is_empty() {
        o.insert("intent".into(), serde_json::json!(m.intent));
    }
    if !m.not_intent.is_empty() {
        o.insert("not_intent".into(), serde_json::json!(m.not_intent));
    }
    if let Some(v) = &m.value {
        o.insert("value".into(), v.clone());
    }
    if let Some(a) = &m.action {
        o.insert("action".into(), Value::String(a.clone()));
    }
    if !m.conditions.is_empty() {
        let conditions = m
            .conditions
            .iter()
            .map(|c| serde_json::json!({"active_loop": c.active_loop, "requested_slot": c.requested_slot}))
            .collect();
        o.insert("conditions".into(), Value::Array(conditions));
    }
    Value::Object(o)
}

fn parse_mapping(v: &Value) -> Result<SlotMapping, String> {
    let m = v
        .as_object()
        .ok_or_else(|| format!("a slot mapping must be a mapping, not {v}"))?;
    let ty = m
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a slot mapping needs a `type`")?;
    if !MAPPING_TYPES.contains(&ty) {
        return Err(format!(
            "unknown slot mapping type `{ty}` (known: {})",
            MAPPING_TYPES.join(", ")
        ));
    }
    let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    if ty == "from_entity" && s("entity").is_none() {
        return Err("a from_entity mapping needs `entity`".into());
    }
    if matches!(ty, "from_intent" | "from_trigger_intent") && !m.contains_key("value") {
        return Err(format!("a {ty} mapping needs `value`"));
    }
    let mut conditions = Vec::new();
    for c in m
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        conditions.push(MappingCondition {
            active_loop: c
                .get("active_loop")
                .and_then(Value::as_str)
                .map(str::to_string),
            requested_slot: c
                .get("requested_slot")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    }
    Ok(SlotMapping {
        mapping_type: ty.to_string(),
        entity: s("entity"),
        role: s("role"),
        group: s("group"),
        intent: str_list(m.get("intent")),
        not_intent: str_list(m.get("not_intent")),
        value: m.get("value").cloned(),
        action: s("action"),
        conditions,
    })
}
