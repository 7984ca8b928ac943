//! `endpoints.yml` with `${VAR}` expansion: never panics; expansion is the identity on text
//! without `$`, and never invents a variable's value.
#![no_main]

use std::path::Path;

use colloquy::config::endpoints::Endpoints;
use colloquy::config::env::expand;
use libfuzzer_sys::fuzz_target;

fn lookup(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("localhost".into()),
        "PORT" => Some("6379".into()),
        "EMPTY" => Some(String::new()),
        "DOLLAR" => Some("$${X}".into()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match expand(text, &lookup) {
        Ok(out) => {
            if !text.contains('$') {
                assert_eq!(out, text);
            }
        }
        Err(_) => assert!(text.contains("${"), "only `${{` can fail: {text:?}"),
    }
    if let Ok(e) = Endpoints::parse(text, Path::new("endpoints.yml"), &lookup) {
        for c in [
            &e.tracker_store,
            &e.lock_store,
            &e.event_broker,
            &e.nlu,
            &e.models,
            &e.action_endpoint,
            &e.nlg,
        ]
        .into_iter()
        .flatten()
        {
            let _ = serde_json::to_string(&c.config);
        }
    }
});
