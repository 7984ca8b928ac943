//! Training data: YAML stories/rules/NLU, Markdown stories and Markdown NLU, as `train`
//! reads them. Never panics; validation against a domain, story stitching and (for small
//! data) NLU training and parsing run on whatever parses.
#![no_main]

use std::sync::OnceLock;

use colloquy::domain::parse::Source;
use colloquy::domain::Domain;
use colloquy::nlu::{NluConfig, NluModel};
use colloquy::training::nlu::{is_md_nlu, parse_annotated, parse_md, NluData};
use colloquy::training::{stories_md, stories_yaml, story};
use libfuzzer_sys::fuzz_target;

const DOMAIN: &str = r#"
version: "3.1"
intents: [greet, inform, affirm, deny]
entities: [city, count]
slots:
  city: {type: text, mappings: [{type: from_entity, entity: city}]}
  count: {type: float, mappings: [{type: from_entity, entity: count}]}
forms:
  city_form: {required_slots: [city]}
responses:
  utter_greet: [{text: "hi"}]
actions: [action_custom]
"#;

fn domain() -> &'static Domain {
    static D: OnceLock<Domain> = OnceLock::new();
    D.get_or_init(|| Domain::from_yaml(DOMAIN, "domain.yml").expect("the fuzz domain parses"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut blocks = Vec::new();
    let mut nlu = NluData::default();
    let mut warnings = Vec::new();
    let parsed = match mode % 3 {
        0 => {
            let src = Source {
                name: "data/stories.yml".into(),
                text: text.into(),
            };
            stories_yaml::parse(&src, &mut blocks, &mut nlu, &mut warnings)
        }
        1 => {
            let src = Source {
                name: "data/stories.md".into(),
                text: text.into(),
            };
            stories_md::parse(&src, &mut blocks)
        }
        _ => {
            let _ = is_md_nlu(text);
            for line in text.lines() {
                let (plain, entities) = parse_annotated(line);
                for e in &entities {
                    assert!(
                        plain.get(e.start..e.end).is_some(),
                        "entity span {}..{} is not a slice of {plain:?}",
                        e.start,
                        e.end
                    );
                }
            }
            let src = Source {
                name: "data/nlu.md".into(),
                text: text.into(),
            };
            parse_md(&src, &mut nlu)
        }
    };
    if parsed.is_err() {
        return;
    }
    let _ = story::validate(&blocks, domain(), &mut warnings);
    let trackers = story::build_trackers(&blocks);
    std::hint::black_box(trackers);
    // NLU training is linear in the data but not cheap: only small data sets.
    if !nlu.examples.is_empty() && nlu.examples.len() <= 32 {
        let model = NluModel::train(&nlu, &NluConfig::default());
        let first = nlu.examples[0].text.clone();
        std::hint::black_box(model.parse(&first));
        std::hint::black_box(model.parse(text));
    }
});
