//! The `/intent@confidence{"entity": "value"}` shortcut: never panics, entity offsets are
//! character positions inside the trimmed text, and the confidence is in [0, 1].
#![no_main]

use colloquy::nlu::regex_shortcut::parse_shortcut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let intents: Vec<String> = ["greet", "inform", "mood great"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let entities: Vec<String> = ["city", "count"].iter().map(|s| s.to_string()).collect();
    let (ki, ke) = match mode % 4 {
        0 => (None, None),
        1 => (Some(&intents[..]), None),
        2 => (None, Some(&entities[..])),
        _ => (Some(&intents[..]), Some(&entities[..])),
    };
    let Some(parsed) = parse_shortcut(text, ki, ke) else {
        return;
    };
    let chars = text.trim().chars().count() as u64;
    if let Some(c) = parsed
        .pointer("/intent/confidence")
        .and_then(|c| c.as_f64())
    {
        assert!((0.0..=1.0).contains(&c), "confidence {c} out of range");
    }
    if let Some(list) = parsed.get("entities").and_then(|e| e.as_array()) {
        for e in list {
            let start = e.get("start").and_then(|v| v.as_u64());
            let end = e.get("end").and_then(|v| v.as_u64());
            if let (Some(s), Some(t)) = (start, end) {
                assert!(
                    s <= t && t <= chars,
                    "entity span {s}..{t} outside {chars} chars"
                );
            }
        }
    }
    let _ = serde_json::to_string(&parsed);
});
