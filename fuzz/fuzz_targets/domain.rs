//! Domain YAML: never panics, and a domain that loads can be written out (`GET /domain`) and
//! loaded again to the same domain.
#![no_main]

use colloquy::domain::Domain;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(domain) = Domain::from_yaml(text, "domain.yml") else {
        return;
    };
    let json = domain.to_json();
    let again = Domain::from_json(&json)
        .unwrap_or_else(|e| panic!("GET /domain output does not load: {e}\n{json}"));
    assert_eq!(again.to_json(), json, "domain JSON is not stable");
    let _ = domain.to_yaml();
    let _ = domain.action_names();
    let _ = domain.slot_mappings();
    let first = domain.intents.first().map(|i| i.name.as_str());
    let _ = domain.used_entities(first, domain.entity_names().into_iter());
});
