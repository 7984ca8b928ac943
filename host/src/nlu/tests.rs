//! Behaviour of the embedded NLU: the shortcut rules of rasa-endpoints §6.3, parse-data shape,
//! synonyms, regex and lookup features, the fallback rule, Unicode and empty text,
//! determinism, and accuracy floors on the shared Rasa examples.

use serde_json::{json, Value};

use super::quality::bench::load;
use super::*;
use crate::domain::Source;
use crate::training::nlu::parse_md;

fn md(text: &str) -> NluData {
    let mut nlu = NluData::default();
    parse_md(
        &Source {
            name: "nlu.md".into(),
            text: text.into(),
        },
        &mut nlu,
    )
    .expect("valid nlu.md");
    nlu
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---- the /intent shortcut (§6.3) ----

#[test]
fn shortcut_without_confidence_is_certain() {
    let v = parse_shortcut("/greet", None, None).unwrap();
    assert_eq!(
        v,
        json!({"text": "/greet", "intent": {"name": "greet", "confidence": 1.0}, "entities": [],
               "intent_ranking": [{"name": "greet", "confidence": 1.0}]})
    );
}

#[test]
fn shortcut_confidence_is_read_clamped_or_zeroed() {
    let conf = |t: &str| {
        parse_shortcut(t, None, None).unwrap()["intent"]["confidence"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(conf("/greet@0.25"), 0.25);
    assert_eq!(conf("/greet@1.7"), 1.0, "above 1 is clamped");
    assert_eq!(conf("/greet@1.2.3"), 0.0, "unparsable is 0");
    assert_eq!(conf("/greet@."), 0.0, "unparsable is 0");
    // `@abc` is not a confidence for the grammar: it is trailing text, ignored.
    assert_eq!(conf("/greet@abc"), 1.0);
    let v = parse_shortcut("/greet@0.3", None, None).unwrap();
    assert_eq!(
        v["intent_ranking"],
        json!([{"name": "greet", "confidence": 0.3}])
    );
}

#[test]
fn shortcut_entities_come_from_a_json_object_with_the_blob_span() {
    let t = r#"/inform@0.8{"city": "Oslo", "day": ["mon", "tue"]}"#;
    let v = parse_shortcut(t, None, None).unwrap();
    let (start, end) = (11, t.chars().count());
    assert_eq!(
        v["entities"],
        json!([
            {"entity": "city", "start": start, "end": end, "value": "Oslo", "extractor": "RegexMessageHandler"},
            {"entity": "day", "start": start, "end": end, "value": "mon", "extractor": "RegexMessageHandler"},
            {"entity": "day", "start": start, "end": end, "value": "tue", "extractor": "RegexMessageHandler"},
        ])
    );
    assert_eq!(v["intent"], json!({"name": "inform", "confidence": 0.8}));
    // Non-string values are kept as JSON values.
    let v = parse_shortcut(r#"/inform{"n": 3}"#, None, None).unwrap();
    assert_eq!(v["entities"][0]["value"], json!(3));
}

#[test]
fn shortcut_offsets_are_characters_of_the_trimmed_text() {
    let t = "  /ínförm{\"city\": \"Zürich\"}  ";
    let v = parse_shortcut(t, None, None).unwrap();
    assert_eq!(v["text"], json!(t), "text as typed");
    assert_eq!(v["intent"]["name"], json!("ínförm"));
    assert_eq!(v["entities"][0]["start"], json!(7));
    assert_eq!(
        v["entities"][0]["end"],
        json!(7 + "{\"city\": \"Zürich\"}".chars().count())
    );
}

#[test]
fn shortcut_invalid_json_gives_no_entities() {
    let v = parse_shortcut("/inform{city: Oslo}", None, None).unwrap();
    assert_eq!(v["intent"]["name"], json!("inform"));
    assert_eq!(v["entities"], json!([]));
}

#[test]
fn shortcut_drops_entity_types_unknown_to_the_domain() {
    let ents = strings(&["city"]);
    let v = parse_shortcut(
        r#"/inform{"city": "Oslo", "planet": "Mars"}"#,
        None,
        Some(&ents),
    )
    .unwrap();
    assert_eq!(v["entities"].as_array().unwrap().len(), 1);
    assert_eq!(v["entities"][0]["entity"], json!("city"));
}

#[test]
fn shortcut_for_an_unknown_intent_is_not_a_shortcut() {
    let intents = strings(&["greet", "inform"]);
    assert!(parse_shortcut("/fly_away", Some(&intents), None).is_none());
    assert!(parse_shortcut("/greet", Some(&intents), None).is_some());
    assert!(
        parse_shortcut("/fly_away", None, None).is_some(),
        "without a domain any intent goes"
    );
}

#[test]
fn shortcut_ignores_trailing_text_and_needs_the_grammar() {
    let v = parse_shortcut(r#"/inform{"city": "Oslo"} please"#, None, None).unwrap();
    assert_eq!(v["intent"]["name"], json!("inform"));
    assert_eq!(v["entities"][0]["value"], json!("Oslo"));
    assert!(
        parse_shortcut("greet", None, None).is_none(),
        "no leading slash"
    );
    assert!(parse_shortcut("/", None, None).is_none(), "no intent");
    assert!(
        parse_shortcut("/{\"a\": 1}", None, None).is_none(),
        "no intent"
    );
    assert!(parse_shortcut("/@0.5", None, None).is_none(), "no intent");
    assert!(parse_shortcut("", None, None).is_none());
    // The intent runs up to `{` or `@` and is trimmed.
    assert_eq!(
        parse_shortcut("/ greet ", None, None).unwrap()["intent"]["name"],
        json!("greet")
    );
}

#[test]
fn parse_message_prefers_a_valid_shortcut_then_the_model() {
    let data = load("moodbot");
    let m = NluModel::train(&data, &NluConfig::default());
    let intents: Vec<String> = m.intents().to_vec();
    let v = parse_message(Some(&m), "/deny", Some(&intents), Some(&[]));
    assert_eq!(v["intent"], json!({"name": "deny", "confidence": 1.0}));
    let v = parse_message(Some(&m), "/no_such_intent", Some(&intents), Some(&[]));
    assert_ne!(v["intent"]["name"], json!("no_such_intent"));
    assert!(
        v["intent_ranking"].as_array().unwrap().len() > 1,
        "parsed by the model"
    );
    let v = parse_message(None, "hello", None, None);
    assert_eq!(v["intent"], json!({"name": null, "confidence": 0.0}));
}

// ---- the model ----

#[test]
fn moodbot_parse_data_has_rasas_shape() {
    let m = NluModel::train(&load("moodbot"), &NluConfig::default());
    let v = m.parse("hello");
    assert_eq!(v["text"], json!("hello"));
    assert_eq!(v["intent"]["name"], json!("greet"));
    assert!(v["intent"]["confidence"].as_f64().unwrap() > 0.5, "{v}");
    assert_eq!(v["entities"], json!([]));
    assert_eq!(v["text_tokens"], json!([[0, 5]]));
    let ranking = v["intent_ranking"].as_array().unwrap();
    assert_eq!(ranking.len(), m.intents().len().min(RANKING_LENGTH));
    assert_eq!(ranking[0], v["intent"]);
    let confs: Vec<f64> = ranking
        .iter()
        .map(|r| r["confidence"].as_f64().unwrap())
        .collect();
    assert!(confs.windows(2).all(|w| w[0] >= w[1]), "sorted");
    assert!(
        (confs.iter().sum::<f64>() - 1.0).abs() < 1e-6,
        "all intents ranked: probabilities sum to 1"
    );
    assert_eq!(
        m.parse("I am very sad")["intent"]["name"],
        json!("mood_unhappy")
    );
    assert_eq!(
        m.parse("are you a bot?")["intent"]["name"],
        json!("bot_challenge")
    );
}

#[test]
fn a_user_event_with_the_typed_ranking_writes_what_the_json_ranking_would() {
    use crate::engine::{Event, EventKind};
    let m = NluModel::train(
        &load("moodbot"),
        &NluConfig {
            fallback_threshold: Some(0.7),
            ambiguity_threshold: Some(0.1),
        },
    );
    let user = |parse_data, intent_ranking| {
        let mut e = Event::new(EventKind::User {
            text: Some("hi".into()),
            parse_data,
            input_channel: Some("rest".into()),
            message_id: Some("m1".into()),
            intent_ranking,
        });
        e.timestamp = 1.5;
        e
    };
    // A confident message, one that falls back, an empty one.
    for text in ["hello", "hm", ""] {
        let (data, ranking) = m.parse_split(text);
        // Both are the ranking's: the intent is its first entry.
        assert!(!data.contains_key("intent_ranking") && !data.contains_key("intent"));
        let Value::Object(whole) = m.parse(text) else {
            panic!("an object")
        };
        assert_eq!(whole["intent_ranking"], ranking.to_value(), "{text:?}");
        let typed = user(data, Some(ranking));
        let as_json = user(whole, None);
        let written = typed.to_json_string();
        assert_eq!(written, as_json.to_json_string(), "{text:?}: same bytes");
        assert_eq!(typed.user_parse_data(), as_json.user_parse_data());
        assert_eq!(typed.intent_name(), as_json.intent_name(), "{text:?}");
        // Read back, the ranking is JSON again and the event writes the same.
        let back = Event::from_json(&serde_json::from_str(&written).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(back.user_parse_data(), typed.user_parse_data());
        assert_eq!(back.to_json_string(), written);
    }
    let fell_back = m.parse("hm");
    assert_eq!(
        fell_back["intent"]["name"],
        json!("nlu_fallback"),
        "{fell_back}"
    );
    assert_eq!(fell_back["intent_ranking"][0], fell_back["intent"]);
}

#[test]
fn ranking_is_cut_at_ten() {
    let text: String = (0..14)
        .map(|i| format!("## intent:i{i}\n- word{i} alpha\n- other{i} beta\n"))
        .collect();
    let m = NluModel::train(&md(&text), &NluConfig::default());
    let v = m.parse("word3");
    assert_eq!(v["intent_ranking"].as_array().unwrap().len(), 10);
    assert_eq!(v["intent"]["name"], json!("i3"));
}

#[test]
fn empty_blank_and_unicode_text_never_panic() {
    let m = NluModel::train(
        &load("formbot"),
        &NluConfig {
            fallback_threshold: Some(0.3),
            ambiguity_threshold: Some(0.1),
        },
    );
    for t in ["", "   ", "\n\t"] {
        let v = m.parse(t);
        assert_eq!(v["text"], json!(t));
        assert_eq!(v["entities"], json!([]));
        // Rasa: no intent, confidence 0 … and the FallbackClassifier then applies.
        assert_eq!(v["intent"]["name"], json!("nlu_fallback"));
        assert_eq!(v["intent_ranking"][0]["name"], json!("nlu_fallback"));
    }
    let plain = NluModel::train(&load("formbot"), &NluConfig::default());
    assert_eq!(
        plain.parse("")["intent"],
        json!({"name": null, "confidence": 0.0})
    );
    assert_eq!(plain.parse("")["intent_ranking"], json!([]));
    for t in [
        "😀😀 🎉",
        "我想要一家意大利餐厅",
        "مرحبا كيف حالك",
        "e\u{301}e\u{301} Zürich straße",
        "\u{0}\u{feff}\u{200b}",
        "?!?!...,,,",
        "i want ñandú food for 4 people in Ålesund",
        "a'b-c.d@e:f/g_h ,1,000 -- '' ..",
    ] {
        let v = plain.parse(t);
        assert_eq!(v["text"], json!(t));
        assert!(v["intent"]["confidence"].as_f64().unwrap().is_finite());
        let n = t.chars().count() as u64;
        for e in v["entities"].as_array().unwrap() {
            let (s, en) = (e["start"].as_u64().unwrap(), e["end"].as_u64().unwrap());
            assert!(s < en && en <= n, "{e} in {t:?}");
        }
        for tok in v["text_tokens"].as_array().unwrap() {
            assert!(tok[1].as_u64().unwrap() <= n);
        }
    }
}

#[test]
fn entity_offsets_are_characters() {
    let m = NluModel::train(&load("formbot"), &NluConfig::default());
    let t = "ééé im looking for italian food";
    let v = m.parse(t);
    let e = v["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entity"] == json!("cuisine"))
        .expect("cuisine found");
    assert_eq!(e["value"], json!("italian"));
    let start = t[..t.find("italian").unwrap()].chars().count();
    assert_eq!(e["start"], json!(start));
    assert_eq!(e["end"], json!(start + 7));
    assert_eq!(e["extractor"], json!(ENTITY_EXTRACTOR));
    let c = e["confidence_entity"].as_f64().unwrap();
    assert!(c > 0.0 && c <= 1.0, "{c}");
}

#[test]
fn huge_input_is_bounded() {
    let m = NluModel::train(&load("formbot"), &NluConfig::default());
    let big = "italian food please ".repeat(50_000);
    let v = m.parse(&big);
    assert_eq!(
        v["text_tokens"].as_array().unwrap().len(),
        tokens::MAX_TOKENS
    );
    let one_word = "x".repeat(1_000_000);
    assert!(m.parse(&one_word)["intent"]["name"].is_string());
}

#[test]
fn synonyms_map_to_the_canonical_value() {
    let data = md("## intent:inform\n\
         - i want to go to [NYC](city:New York)\n\
         - fly me to [paris](city)\n\
         - i want to go to [berlin](city)\n\
         - to [new york city](city:New York) please\n\
         - [london](city) please\n\
         - i want to go to [big apple](city)\n\
         ## intent:greet\n- hi\n- hello\n- good morning\n\
         ## synonym:New York\n- big apple\n");
    let m = NluModel::train(&data, &NluConfig::default());
    let v = m.parse("i want to go to nyc");
    let e = &v["entities"][0];
    assert_eq!(e["entity"], json!("city"));
    assert_eq!(e["value"], json!("New York"), "{v}");
    assert_eq!(e["processors"], json!(["EntitySynonymMapper"]));
    let v = m.parse("fly me to paris");
    assert_eq!(v["entities"][0]["value"], json!("paris"));
    assert!(v["entities"][0].get("processors").is_none());
    // A synonym from a `synonym:` section also applies to what the tagger finds.
    let v = m.parse("fly me to big apple");
    let vals: Vec<&Value> = v["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["value"])
        .collect();
    assert!(vals.contains(&&json!("New York")), "{v}");
}

fn zip_data() -> NluData {
    md(
        "## intent:inform_zip\n\
         - my zip is [12345](zipcode)\n\
         - it is [90210](zipcode)\n\
         - [55555](zipcode) is my zip code\n\
         - the code is [10001](zipcode)\n\
         - [20500](zipcode)\n\
         - i live in [02134](zipcode)\n\
         ## intent:greet\n- hi\n- hello there\n- my name is bob\n- it is me\n- the weather is nice\n\
         ## regex:zipcode\n- \\b[0-9]{5}\\b\n",
    )
}

#[test]
fn regex_features_help_find_unseen_values() {
    let m = NluModel::train(&zip_data(), &NluConfig::default());
    let v = m.parse("the zip is 73301");
    let e = v["entities"].as_array().unwrap();
    assert!(
        e.iter()
            .any(|e| e["entity"] == json!("zipcode") && e["value"] == json!("73301")),
        "{v}"
    );
    assert_eq!(v["intent"]["name"], json!("inform_zip"));
}

#[test]
fn lookup_tables_help_find_unseen_values() {
    let data = md("## intent:order\n\
         - i want a [margherita](pizza)\n\
         - one [hawaii](pizza) please\n\
         - can i get a [diavola](pizza)\n\
         - i would like [funghi](pizza) now\n\
         - [capricciosa](pizza) for me\n\
         - a [prosciutto cotto](pizza) for my friend\n\
         ## intent:greet\n- hi\n- hello\n- hey there friend\n- good day\n\
         ## lookup:pizza\n- margherita\n- hawaii\n- diavola\n- funghi\n- capricciosa\n- prosciutto cotto\n- quattro formaggi\n- marinara\n");
    let m = NluModel::train(&data, &NluConfig::default());
    for (text, value) in [
        ("can i get a marinara", "marinara"),
        ("i want a quattro formaggi", "quattro formaggi"),
    ] {
        let v = m.parse(text);
        let e = v["entities"].as_array().unwrap();
        assert_eq!(e.len(), 1, "{v}");
        assert_eq!(e[0]["entity"], json!("pizza"));
        assert_eq!(e[0]["value"], json!(value));
    }
}

#[test]
fn roles_and_groups_are_predicted() {
    let data = md(r#"## intent:book
- fly from [berlin]{"entity": "city", "role": "from"} to [paris]{"entity": "city", "role": "to"}
- from [oslo]{"entity": "city", "role": "from"} to [rome]{"entity": "city", "role": "to"}
- a flight from [madrid]{"entity": "city", "role": "from"} to [london]{"entity": "city", "role": "to"}
- i go from [vienna]{"entity": "city", "role": "from"} to [prague]{"entity": "city", "role": "to"}
## intent:greet
- hi
- hello
"#);
    let m = NluModel::train(&data, &NluConfig::default());
    let v = m.parse("fly from oslo to paris");
    let e = v["entities"].as_array().unwrap();
    assert_eq!(e.len(), 2, "{v}");
    assert_eq!(
        (&e[0]["value"], &e[0]["role"]),
        (&json!("oslo"), &json!("from"))
    );
    assert_eq!(
        (&e[1]["value"], &e[1]["role"]),
        (&json!("paris"), &json!("to"))
    );
}

#[test]
fn fallback_classifier_replaces_a_low_confidence_intent() {
    let data = load("moodbot");
    let m = NluModel::train(
        &data,
        &NluConfig {
            fallback_threshold: Some(0.999_999),
            ambiguity_threshold: None,
        },
    );
    let v = m.parse("hello");
    assert_eq!(
        v["intent"],
        json!({"name": "nlu_fallback", "confidence": 0.999_999})
    );
    let r = v["intent_ranking"].as_array().unwrap();
    assert_eq!(r[0], v["intent"]);
    assert_eq!(
        r[1]["name"],
        json!("greet"),
        "the original ranking is kept after the fallback"
    );
    // Ambiguity: the top two closer than the threshold.
    let m = NluModel::train(
        &data,
        &NluConfig {
            fallback_threshold: Some(0.0),
            ambiguity_threshold: Some(1.0),
        },
    );
    assert_eq!(m.parse("hello")["intent"]["name"], json!("nlu_fallback"));
    let m = NluModel::train(
        &data,
        &NluConfig {
            fallback_threshold: Some(0.1),
            ambiguity_threshold: Some(0.01),
        },
    );
    assert_eq!(m.parse("hello")["intent"]["name"], json!("greet"));
}

#[test]
fn training_is_deterministic_and_the_model_round_trips() {
    let data = load("formbot");
    let a = NluModel::train(&data, &NluConfig::default());
    let b = NluModel::train(&data, &NluConfig::default());
    let ja = serde_json::to_string(&a).unwrap();
    assert_eq!(ja, serde_json::to_string(&b).unwrap());
    let loaded: NluModel = serde_json::from_str(&ja).unwrap();
    for t in [
        "i want italian food",
        "hello",
        "no thanks",
        "a table for 4 people outside",
    ] {
        assert_eq!(a.parse(t), loaded.parse(t), "{t}");
    }
}

#[test]
fn a_corrupt_model_predicts_nothing_instead_of_panicking() {
    let m = NluModel::train(&load("formbot"), &NluConfig::default());
    let mut v = serde_json::to_value(&m).unwrap();
    v["intents"]["bias"] = json!([0.5]);
    v["entities"]["transitions"] = json!([]);
    let broken: NluModel = serde_json::from_value(v).unwrap();
    let out = broken.parse("italian food");
    assert_eq!(out["intent"]["name"], Value::Null);
    assert_eq!(out["entities"], json!([]));
}

#[test]
fn data_without_intents_or_with_one_intent_works() {
    let m = NluModel::train(&NluData::default(), &NluConfig::default());
    assert_eq!(
        m.parse("hello")["intent"],
        json!({"name": null, "confidence": 0.0})
    );
    let m = NluModel::train(&md("## intent:greet\n- hi\n"), &NluConfig::default());
    assert_eq!(
        m.parse("anything")["intent"],
        json!({"name": "greet", "confidence": 1.0})
    );
}

// ---- quality floors (5-fold, seed 42; measured figures in docs/nlu-quality.md) ----

fn floors(bot: &str, accuracy: f64, macro_f1: f64, entity_f1: Option<f64>) {
    let r = cross_validate(&load(bot), 5, 42);
    let ie = &r.intent_evaluation;
    assert!(
        ie.accuracy >= accuracy,
        "{bot}: accuracy {:.3} < {accuracy}",
        ie.accuracy
    );
    assert!(
        ie.macro_f1 >= macro_f1,
        "{bot}: macro-F1 {:.3} < {macro_f1}",
        ie.macro_f1
    );
    if let Some(f) = entity_f1 {
        let e = r.entity_evaluation.as_ref().expect("entities evaluated");
        assert!(e.f1_score >= f, "{bot}: entity F1 {:.3} < {f}", e.f1_score);
    }
    let report = &ie.report;
    assert!(
        report.get("accuracy").is_some()
            && report.get("macro avg").is_some()
            && report.get("weighted avg").is_some()
    );
}

#[test]
fn moodbot_cross_validation_floor() {
    // measured 0.716 / 0.713
    floors("moodbot", 0.66, 0.65, None);
}

#[test]
fn formbot_cross_validation_floor() {
    // measured 0.917 / 0.891, entity F1 0.898
    floors("formbot", 0.88, 0.85, Some(0.85));
}

#[test]
fn concertbot_cross_validation_floor() {
    // measured 0.931 / 0.936 (29 examples: one error is 3.4 points)
    floors("concertbot", 0.86, 0.86, None);
}

// ---- stored in the model archive by `colloquy train` ----

#[test]
fn colloquy_train_stores_the_nlu_model_with_the_pipeline_fallback() {
    use crate::model::Model;
    use crate::training::{train, TrainOptions};
    let out = tempfile::tempdir().unwrap();
    let bot = std::path::Path::new(super::quality::bench::EXAMPLES).join("concertbot");
    let opts = TrainOptions {
        domain: bot.join("domain.yml"),
        data: vec![bot.join("data")],
        config: bot.join("config.yml"),
        out: out.path().to_path_buf(),
        fixed_model_name: None,
        force: false,
    };
    let outcome = train(&opts, &mut |_| {}).expect("trained");
    let model = Model::load(&outcome.path).expect("loads");
    let nlu = model.nlu.expect("the archive carries the NLU model");
    assert_eq!(
        nlu.config,
        NluConfig {
            fallback_threshold: Some(0.4),
            ambiguity_threshold: Some(0.1)
        }
    );
    assert_eq!(
        nlu.parse("show me concerts")["intent"]["name"],
        json!("search_concerts")
    );
}

#[test]
fn serving_features_predict_the_same_as_feature_names() {
    // `predict_message` looks features up as they are generated; training and evaluation use
    // `feature_names`. Both must give identical probabilities, to the bit, including for words
    // the model never saw, regex/lookup patterns, repeated words and odd text.
    for bot in ["moodbot", "formbot"] {
        let m = NluModel::train(&load(bot), &NluConfig::default());
        let texts = [
            "hello",
            "hello hello hello",
            "I am very sad today, really",
            "are you a bot?",
            "",
            "   ",
            "zzqx unseen wörds ☕ 12345 https://example.com/a?b=c",
            "restaurant for 4 people in the center, outdoor seating please",
            &"long".repeat(40),
        ];
        for text in texts {
            let toks = tokens::tokenize(text);
            let pf = m.patterns.token_features(text, &toks);
            let by_names = m.intents.predict(&intent::feature_names(&toks, &pf));
            let served = m.intents.predict_message(&toks, &pf);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&by_names), bits(&served), "{bot}: {text:?}");
            if let Some(tagger) = &m.entities {
                let by_names = tagger.predict(&entities::token_features(&toks, &pf));
                let served = tagger.predict_tokens(&toks, &pf);
                assert_eq!(
                    format!("{by_names:?}"),
                    format!("{served:?}"),
                    "{bot}: {text:?}"
                );
            }
        }
    }
}
