//! Conversations end to end: trained models, the REST channel, the dialogue routes and a
//! real rasa_sdk action server (rasa-http-api §7 cases 5, 11–12, 15, 26–29, 33–40).

use colloquy_blackbox_tests::bots::{
    formbot_actions_dir, hello_bot, rasa_example, train, ActionServer,
};
use colloquy_blackbox_tests::{assert_rasa_error, first_event, Server};
use serde_json::{json, Value};

fn say(s: &Server, sender: &str, text: &str) -> Vec<Value> {
    let (st, body) = s.post(
        "/webhooks/rest/webhook",
        &json!({"sender": sender, "message": text}),
    );
    assert_eq!(st, 200, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

fn texts(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_string))
        .collect()
}

/// `event:name` for actions and `event` otherwise, for compact sequence checks.
fn sequence(s: &Server, id: &str) -> Vec<String> {
    let (_, t) = s.get(&format!("/conversations/{id}/tracker?include_events=ALL"));
    t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e["event"].as_str().unwrap() {
            "action" => format!("action:{}", e["name"].as_str().unwrap_or("")),
            "slot" => format!("slot:{}={}", e["name"].as_str().unwrap(), e["value"]),
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn moodbot_happy_and_sad_paths() {
    let model = train(&rasa_example("moodbot"));
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .start();
    assert_eq!(texts(&say(&s, "happy", "/greet")), ["Hey! How are you?"]);
    assert_eq!(
        texts(&say(&s, "happy", "/mood_great")),
        ["Great, carry on!"]
    );
    assert_eq!(
        sequence(&s, "happy"),
        [
            "action:action_session_start",
            "session_started",
            "action:action_listen",
            "user",
            "user_featurization",
            "action:utter_greet",
            "bot",
            "action:action_listen",
            "user",
            "user_featurization",
            "action:utter_happy",
            "bot",
            "action:action_listen",
        ]
    );
    let (_, t) = s.get("/conversations/happy/tracker?include_events=ALL");
    let events = t["events"].as_array().unwrap();
    assert_eq!(events[0]["policy"], "followup_action");
    assert_eq!(events[5]["confidence"], 1.0);
    assert!(events[5]["policy"].as_str().unwrap().ends_with("Policy"));
    let bot = &events[6];
    assert_eq!(bot["metadata"]["utter_action"], "utter_greet");
    for key in [
        "elements",
        "quick_replies",
        "buttons",
        "attachment",
        "image",
        "custom",
    ] {
        assert!(bot["data"].get(key).is_some(), "bot data lacks {key}");
    }
    // Every new event carries the model's ids (3.6).
    let (_, status) = s.get("/status");
    assert!(events
        .iter()
        .all(|e| e["metadata"]["model_id"] == status["model_id"]));
    assert_eq!(status["is_ready"], true);

    say(&s, "sad", "/greet");
    let sad = say(&s, "sad", "/mood_unhappy");
    assert_eq!(
        texts(&sad),
        ["Here is something to cheer you up:", "Did that help you?"]
    );
    assert!(sad.iter().any(|m| m["image"].is_string()), "{sad:?}");
    assert_eq!(texts(&say(&s, "sad", "/deny")), ["Bye"]);

    // Case 15/33: the story of the conversation.
    let (_, story) = s.get_text("/conversations/sad/story");
    assert!(
        story.contains("- intent: mood_unhappy") && story.contains("- action: utter_cheer_up"),
        "{story}"
    );
    // Restart: the conversation starts over with a new session.
    say(&s, "sad", "/restart");
    let seq = sequence(&s, "sad");
    let tail: Vec<&str> = seq.iter().rev().take(4).rev().map(String::as_str).collect();
    assert!(seq.contains(&"restart".to_string()), "{seq:?}");
    assert!(
        seq.iter()
            .filter(|e| *e == "action:action_session_start")
            .count()
            >= 2,
        "{seq:?}"
    );
    assert_eq!(
        tail.last().copied(),
        Some("action:action_listen"),
        "{seq:?}"
    );
}

#[test]
fn dialogue_routes_follow_rasa() {
    let model = train(&hello_bot());
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .token("tok")
        .start();
    // Case 35: unknown conversations.
    for route in ["predict", "execute", "story"] {
        let (st, e) = if route == "story" {
            s.get(&format!("/conversations/nobody/{route}"))
        } else {
            s.post(
                &format!("/conversations/nobody/{route}"),
                &json!({"name": "utter_greet"}),
            )
        };
        assert_rasa_error(st, &e, 404);
        assert_eq!(e["message"], "Conversation ID not found.");
    }
    // Messages: logged without prediction; parse_data entities fill slots.
    let (st, t) = s.post("/conversations/m1/messages", &json!({"text": "a latte", "sender": "user", "parse_data": {"intent": {"name": "inform", "confidence": 0.9}, "entities": [{"entity": "drink", "value": "latte", "start": 2, "end": 7}]}}));
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["latest_message"]["text"], "a latte");
    assert_eq!(t["slots"]["drink"], "latte");
    let seq = sequence(&s, "m1");
    assert_eq!(
        seq[3..],
        ["user".to_string(), "slot:drink=\"latte\"".to_string()]
    );
    let (st, e) = s.post(
        "/conversations/m1/messages",
        &json!({"text": "hi", "sender": "bot"}),
    );
    assert_rasa_error(st, &e, 400);
    let (st, e) = s.post_raw("/conversations/m1/messages", "");
    assert_rasa_error(st, &e, 400);
    // parse_data that could not be read back once stored (found by schemathesis: a float
    // entity offset was stored, and every later read of m1 failed with a 500) is refused,
    // and m1 stays as it was.
    let stored = sequence(&s, "m1");
    for bad in [
        json!({"entities": [{"entity": "drink", "value": "latte", "start": 1.5, "end": 7}]}),
        json!({"entities": {"drink": "latte"}}),
        json!({"intent": {"name": 3}}),
    ] {
        let (st, e) = s.post(
            "/conversations/m1/messages",
            &json!({"text": "a latte", "parse_data": bad}),
        );
        assert_rasa_error(st, &e, 400);
        assert!(e["message"].as_str().unwrap().contains("parse_data"), "{e}");
    }
    assert_eq!(sequence(&s, "m1"), stored);
    // Case 11/35: predict returns sorted scores and stores nothing.
    let before = sequence(&s, "m1").len();
    let (st, p) = s.post("/conversations/m1/predict", &json!({}));
    assert_eq!(st, 200, "{p}");
    let scores: Vec<(String, f64)> = p["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["action"].as_str().unwrap().to_string(),
                x["score"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut sorted = scores.clone();
    sorted.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
    assert_eq!(scores, sorted);
    assert!(
        p["policy"].is_string() && p["confidence"].is_number() && p["tracker"]["sender_id"] == "m1"
    );
    assert_eq!(sequence(&s, "m1").len(), before);
    // Case 36: execute.
    let (st, r) = s.post("/conversations/m1/execute", &json!({"name": "utter_hours"}));
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        r["messages"][0]["text"],
        "We are open every day from 7am to 7pm."
    );
    assert_eq!(r["messages"][0]["recipient_id"], "m1");
    // The tracker answered is the conversation's, as a GET gives it (same verbosity).
    let (_, t) = s.get("/conversations/m1/tracker");
    assert_eq!(r["tracker"], t);
    let (st, r) = s.post(
        "/conversations/m1/execute?include_events=ALL",
        &json!({"name": "utter_hours"}),
    );
    assert_eq!(st, 200, "{r}");
    let (_, t) = s.get("/conversations/m1/tracker?include_events=ALL");
    assert_eq!(r["tracker"], t);
    let (st, e) = s.post("/conversations/m1/execute", &json!({}));
    assert_rasa_error(st, &e, 400);
    let (st, e) = s.post("/conversations/m1/execute", &json!({"name": "ka[pa[..."}));
    assert!((400..500).contains(&st), "{st} {e}");
    // Case 37: trigger_intent, with the entity short-hand.
    let (st, r) = s.post(
        "/conversations/t1/trigger_intent",
        &json!({"name": "order_coffee", "entities": {"drink": "espresso"}}),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["tracker"]["slots"]["drink"], "espresso");
    assert_eq!(
        r["messages"][0]["text"],
        "Which size: small, medium or large?"
    );
    let user = first_event(&r["tracker"], "user");
    assert_eq!(user["text"], "EXTERNAL: order_coffee");
    assert_eq!(user["metadata"]["is_external"], true);
    let (_, t) = s.get("/conversations/t1/tracker");
    assert_eq!(r["tracker"], t);
    let (st, e) = s.post("/conversations/t1/trigger_intent", &json!({}));
    assert_rasa_error(st, &e, 400);
    let (st, e) = s.post(
        "/conversations/t1/trigger_intent",
        &json!({"name": "no_such_intent"}),
    );
    assert_rasa_error(st, &e, 404);
    // Case 5 (0.x): respond.
    let (st, r) = s.post("/conversations/r1/respond", &json!({"query": "/greet"}));
    assert_eq!(st, 200);
    assert_eq!(r[0]["recipient_id"], "r1");
    assert!(r[0]["text"].as_str().unwrap().starts_with("Hello!"));
    let (st, r) = s.get("/conversations/r1/respond?q=/ask_hours");
    assert_eq!(st, 200);
    assert_eq!(r[0]["text"], "We are open every day from 7am to 7pm.");
    // Parsing: the shortcut, with entities and confidence clamping.
    let (_, p) = s.post(
        "/model/parse",
        &json!({"text": "/inform@1.7{\"drink\": [\"latte\", \"mocha\"], \"colour\": \"red\"}"}),
    );
    assert_eq!(p["intent"], json!({"name": "inform", "confidence": 1.0}));
    let ents = p["entities"].as_array().unwrap();
    assert_eq!(ents.len(), 2, "{p}");
    assert_eq!(ents[0]["extractor"], "RegexMessageHandler");
    let (_, p) = s.post("/parse", &json!({"q": "/greet"}));
    assert_eq!(p["intent"]["name"], "greet");
    let (st, e) = s.post("/model/parse", &json!({"message": "no text key"}));
    assert_rasa_error(st, &e, 400);
    // Case 12/31: model predict.
    let (_, t) = s.get("/conversations/r1/tracker?include_events=APPLIED");
    let (st, p) = s.post("/model/predict", &t["events"]);
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["tracker"]["sender_id"], "default");
    let (st, e) = s.post_raw("/model/predict", "");
    assert_rasa_error(st, &e, 400);
    let (st, e) = s.post(
        "/model/predict",
        &json!([{"event": "user", "parse_data": {"entities": {"a": 1}}}]),
    );
    assert_rasa_error(st, &e, 400);
    // The REST channel's health and stream mode.
    let r = s
        .client
        .get(format!("http://127.0.0.1:{}/webhooks/rest/", s.port))
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap(), json!({"status": "ok"}));
    let r = s
        .client
        .post(format!(
            "http://127.0.0.1:{}/webhooks/rest/webhook?stream=true",
            s.port
        ))
        .json(&json!({"sender": "st", "message": "/greet"}))
        .send()
        .unwrap();
    let body = r.text().unwrap();
    assert_eq!(body.lines().count(), 1);
    assert!(
        serde_json::from_str::<Value>(body.lines().next().unwrap()).unwrap()["text"].is_string()
    );
}

#[test]
fn without_a_model_the_dialogue_routes_answer_409() {
    let s = Server::builder().start();
    s.post(
        "/conversations/x/tracker/events",
        &json!({"event": "pause"}),
    );
    for route in ["messages", "predict", "execute", "trigger_intent"] {
        let (st, e) = s.post(
            &format!("/conversations/x/{route}"),
            &json!({"text": "hi", "name": "greet"}),
        );
        assert_rasa_error(st, &e, 409);
    }
    let (st, e) = s.post(
        "/webhooks/rest/webhook",
        &json!({"sender": "x", "message": "hi"}),
    );
    assert_rasa_error(st, &e, 409);
    let (st, e) = s.post("/model/parse", &json!({"text": "hi"}));
    assert_rasa_error(st, &e, 409);
    let (_, status) = s.get("/status");
    assert_eq!(status["is_ready"], false);
}

#[test]
fn the_rest_webhook_reads_its_body_as_rasa_does() {
    let model = train(&hello_bot());
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .start();
    let hook = "/webhooks/rest/webhook";
    let refused = |body: &str, says: &str| {
        let (st, e) = s.post_raw(hook, body);
        assert_rasa_error(st, &e, 400);
        assert!(e["message"].as_str().unwrap().contains(says), "{body}: {e}");
    };
    refused("", "No request body provided");
    refused("[1, 2]", "must be a JSON object");
    refused("\"hi\"", "must be a JSON object");
    refused(r#"{"sender": "w", "message":"#, "not valid JSON");
    refused(r#"{"sender": "w"}"#, "needs a 'message'");
    refused(r#"{"sender": "w", "message": null}"#, "needs a 'message'");
    refused(
        r#"{"sender": "w", "message": 3}"#,
        "'message' must be a string, got 3",
    );
    refused(
        r#"{"sender": "w", "message": "hi", "metadata": [1]}"#,
        "'metadata' must be an object",
    );
    refused(
        r#"{"sender": "w", "message": "hi", "input_channel": 1}"#,
        "'input_channel' must be a string",
    );
    // Answered: extra keys are ignored, the message is trimmed, a key given twice counts
    // once with its last value, a missing or null sender is "default", a number is its text.
    let answered = |body: &str| {
        let (st, reply) = s.post_raw(hook, body);
        assert_eq!(st, 200, "{body}: {reply}");
        assert!(
            !texts(reply.as_array().unwrap()).is_empty(),
            "{body}: {reply}"
        );
    };
    answered(r#"{"sender": "w1", "message": "  /greet \n", "extra": {"a": 1}}"#);
    answered(r#"{"sender": "w0", "message": "/greet", "sender": "w2"}"#);
    answered(r#"{"message": "/greet"}"#);
    answered(r#"{"sender": null, "message": "/greet", "metadata": null}"#);
    answered(
        r#"{"sender": 17, "message": "/greet", "metadata": {"k": "v"}, "input_channel": "web"}"#,
    );
    for (id, users) in [("w1", 1), ("w0", 0), ("w2", 1), ("default", 2), ("17", 1)] {
        let (_, t) = s.get(&format!("/conversations/{id}/tracker"));
        let user_events: Vec<&Value> = t["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "user")
            .collect();
        assert_eq!(user_events.len(), users, "{id}: {t}");
        if id == "w1" {
            assert_eq!(user_events[0]["text"], "/greet");
        }
        if id == "17" {
            assert_eq!(user_events[0]["input_channel"], "web");
            assert_eq!(user_events[0]["metadata"]["k"], "v");
        }
    }
}

#[test]
fn hello_bot_takes_an_order_through_its_form() {
    let model = train(&hello_bot());
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .start();
    say(&s, "c", "/order_coffee");
    say(&s, "c", "/inform{\"drink\": \"latte\"}");
    let last = say(&s, "c", "/inform{\"size\": \"large\"}");
    assert_eq!(texts(&last), ["One large latte, coming right up!"]);
    let (_, t) = s.get("/conversations/c/tracker");
    assert_eq!(t["active_loop"], json!({}));
    assert_eq!(t["slots"]["requested_slot"], Value::Null);
    // A paused conversation ignores messages.
    s.post(
        "/conversations/c/tracker/events",
        &json!({"event": "pause"}),
    );
    assert!(say(&s, "c", "/greet").is_empty());
}

#[test]
fn formbot_fills_its_form_through_a_real_action_server() {
    let actions = ActionServer::start(&formbot_actions_dir(), "actions");
    let model = train(&rasa_example("formbot"));
    let endpoints = format!("action_endpoint:\n  url: {}\n", actions.url());
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .endpoints(&endpoints)
        .start();
    assert_eq!(
        texts(&say(&s, "f", "/request_restaurant")),
        ["What cuisine?"]
    );
    // The validator refuses an unknown cuisine and the form asks again.
    assert_eq!(
        texts(&say(&s, "f", "/inform{\"cuisine\": \"klingon\"}")),
        [
            "Cuisine type is not in the database, please try again",
            "What cuisine?"
        ]
    );
    assert_eq!(
        texts(&say(&s, "f", "/inform{\"cuisine\": \"Italian\"}")),
        ["How many people?"]
    );
    assert_eq!(
        texts(&say(&s, "f", "/inform{\"number\": \"4\"}")),
        ["Do you want to sit outside?"]
    );
    assert_eq!(
        texts(&say(&s, "f", "/affirm")),
        ["Please provide additional preferences"]
    );
    assert_eq!(
        texts(&say(&s, "f", "/deny")),
        ["Please give your feedback on your experience so far"]
    );
    let done = texts(&say(&s, "f", "/inform{\"feedback\": \"great\"}"));
    assert_eq!(done[0], "All done!");
    assert!(
        done[1].contains("cuisine: italian")
            && done[1].contains("num_people: 4.0")
            && done[1].contains("feedback: great"),
        "{done:?}"
    );
    let (_, t) = s.get("/conversations/f/tracker");
    assert_eq!(t["slots"]["cuisine"], "italian");
    assert_eq!(t["slots"]["outdoor_seating"], true);
    assert_eq!(t["slots"]["preferences"], "no additional preferences");
    assert_eq!(t["active_loop"], json!({}));
}

#[test]
fn custom_actions_and_their_failures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/custom_bot");
    let model = train(&dir);
    let actions = ActionServer::start(&formbot_actions_dir(), "actions");
    let endpoints = format!("action_endpoint:\n  url: {}\n  timeout: 5\n", actions.url());
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .endpoints(&endpoints)
        .start();
    let greet = say(&s, "ada", "/greet");
    assert_eq!(texts(&greet), ["Hi ada, you said: /greet"]);
    let (_, t) = s.get("/conversations/ada/tracker");
    assert_eq!(t["slots"]["cuisine"], "greek");
    // A 400 from the action server: action_execution_rejected, the turn goes on.
    let r = say(&s, "ada", "/reject_me");
    assert!(r.is_empty(), "{r:?}");
    assert!(sequence(&s, "ada").contains(&"action_execution_rejected".to_string()));
    // A 500: logged, the action counts as run without effects, the next action follows.
    assert_eq!(
        texts(&say(&s, "ada", "/fail_me")),
        ["Something failed, but I am still here."]
    );
    drop(actions);
    // Unreachable action server: same, and the HTTP request still succeeds.
    assert_eq!(
        texts(&say(&s, "bob", "/fail_me")),
        ["Something failed, but I am still here."]
    );
    let r = say(&s, "bob", "/greet");
    assert!(r.is_empty(), "{r:?}");
}

fn example_actions() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/example_actions")
}

#[test]
fn concertbot_searches_through_custom_actions() {
    let actions = ActionServer::start(&example_actions(), "actions");
    let model = train(&rasa_example("concertbot"));
    let endpoints = format!("action_endpoint:\n  url: {}\n", actions.url());
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .endpoints(&endpoints)
        .start();
    // The stories start with the search (TED, which Colloquy skips, would generalise from a
    // greeting first).
    assert_eq!(
        texts(&say(&s, "c", "/search_concerts")),
        ["Here are some concerts: Foo Fighters, Katy Perry"]
    );
    let (_, t) = s.get("/conversations/c/tracker");
    assert_eq!(t["slots"]["concerts"][1]["artist"], "Katy Perry");
    assert_eq!(
        texts(&say(&s, "c", "/compare_reviews")),
        ["Katy Perry has the best reviews"]
    );
    assert_eq!(texts(&say(&s, "g", "/greet")), ["Hey there!"]);
    let seq = sequence(&s, "c");
    assert!(
        seq.contains(&"action:action_search_concerts".to_string())
            && seq.contains(&"action:action_show_concert_reviews".to_string()),
        "{seq:?}"
    );
}

#[test]
fn reminderbot_reminds_through_the_callback_channel() {
    let callback = colloquy_blackbox_tests::capture::CaptureServer::start();
    let actions = ActionServer::start(&example_actions(), "actions");
    let model = train(&rasa_example("reminderbot"));
    let endpoints = format!("action_endpoint:\n  url: {}\n", actions.url());
    let credentials = format!("rest:\ncallback:\n  url: {}\n", callback.url());
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .arg("--credentials")
        .arg("credentials.yml")
        .file("credentials.yml", credentials.as_bytes())
        .endpoints(&endpoints)
        .start();
    assert_eq!(
        texts(&say(&s, "r", "/ask_remind_call{\"PERSON\": \"Ada\"}")),
        ["I will remind you in 2 seconds."]
    );
    let got = callback.wait_for(1, std::time::Duration::from_secs(20));
    assert_eq!(
        got.first().map(|m| m["text"].clone()),
        Some(json!("Remember to call Ada!")),
        "{got:?}"
    );
    let seq = sequence(&s, "r");
    assert!(
        seq.contains(&"reminder".to_string())
            && seq.contains(&"action:action_react_to_reminder".to_string()),
        "{seq:?}"
    );
    // Forgetting cancels a scheduled reminder.
    say(&s, "r2", "/ask_remind_call{\"PERSON\": \"Bob\"}");
    assert_eq!(
        texts(&say(&s, "r2", "/ask_forget_reminders")),
        ["Okay, I'll cancel all your reminders."]
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!sequence(&s, "r2").contains(&"action:action_react_to_reminder".to_string()));
    assert_eq!(callback.received.lock().unwrap().len(), 1);
}

#[test]
fn a_slow_action_server_is_bounded_by_the_endpoint_timeout() {
    // An action server that accepts the connection and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/custom_bot");
    let model = train(&dir);
    let endpoints =
        format!("action_endpoint:\n  url: http://127.0.0.1:{port}/webhook\n  timeout: 1\n");
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .endpoints(&endpoints)
        .start();
    let started = std::time::Instant::now();
    assert_eq!(
        texts(&say(&s, "slow", "/fail_me")),
        ["Something failed, but I am still here."]
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// An action server on a thread: the `n`th request (from 0) is read whole, then answered
/// with 200 and `answer(n)`'s body after `answer(n)`'s delay. Returns its port and the number
/// of answers given (counted as each is written).
fn fake_action_server(
    answer: impl Fn(usize) -> (std::time::Duration, String) + Send + 'static,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = answered.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for (n, stream) in listener.incoming().flatten().enumerate() {
            let mut stream = stream;
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            // Read the head and the body (Content-Length) before answering.
            loop {
                let k = stream.read(&mut buf).unwrap_or(0);
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if got.len() >= head_end + 4 + length {
                        break;
                    }
                }
            }
            let (delay, body) = answer(n);
            std::thread::sleep(delay);
            // Counted before the answer is written: a test that has its turn's reply, which
            // follows this answer, must see the count (counting afterwards raced with it).
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, answered)
}

/// The custom bot with an action server that answers "Hello, slowly." after 1.5 s, and the
/// number of answers it gave.
fn slow_greeter(extra_endpoints: &str) -> (Server, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (port, answered) = fake_action_server(|_| {
        (
            std::time::Duration::from_millis(1500),
            r#"{"events": [], "responses": [{"text": "Hello, slowly."}]}"#.to_string(),
        )
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/custom_bot");
    let model = train(&dir);
    let endpoints = format!(
        "action_endpoint:\n  url: http://127.0.0.1:{port}/webhook\n  timeout: 10\n{extra_endpoints}"
    );
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .endpoints(&endpoints)
        .start();
    (s, answered)
}

/// Sends `message` for `sender` to the REST channel and hangs up 0.3 s later, before the
/// answer: while the turn holds the conversation's lock and waits for the slow action.
fn hang_up_mid_turn(s: &Server, sender: &str, message: &str) {
    use std::io::Write;
    let body = json!({"sender": sender, "message": message}).to_string();
    let address = s.url("").trim_start_matches("http://").to_string();
    let mut client = std::net::TcpStream::connect(&address).unwrap();
    write!(
        client,
        "POST /webhooks/rest/webhook HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
}

#[test]
fn a_client_hanging_up_mid_turn_neither_stalls_nor_cuts_the_turn() {
    let (s, answered) = slow_greeter("");
    hang_up_mid_turn(&s, "gone", "/greet");
    // The same conversation answers as soon as the first turn is done, not after the lock's
    // lease (60 s) or the lock wait.
    let started = std::time::Instant::now();
    assert_eq!(texts(&say(&s, "gone", "/greet")), ["Hello, slowly."]);
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(8), "{took:?}");
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 2);
    // The abandoned turn ran to its end: both turns are stored whole, one after the other.
    let events = sequence(&s, "gone");
    let users: Vec<usize> = (0..events.len()).filter(|&i| events[i] == "user").collect();
    assert_eq!(users.len(), 2, "{events:?}");
    let (first, second) = (&events[users[0]..users[1]], &events[users[1]..]);
    assert_eq!(first, second, "{events:?}");
    for expected in ["action:action_greet_by_name", "bot"] {
        assert!(second.iter().any(|e| e == expected), "{events:?}");
    }
    assert_eq!(second.last().unwrap(), "action:action_listen", "{events:?}");
}

#[test]
fn sigterm_lets_a_turn_whose_client_hung_up_finish_and_publish() {
    let (mut s, answered) = slow_greeter("event_broker:\n  type: file\n  path: broker.log\n");
    hang_up_mid_turn(&s, "left", "/greet");
    let status = s.terminate();
    assert!(status.success(), "{status:?}\n{}", s.stderr());
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The turn ended before the broker was closed: its last events were published.
    let text = std::fs::read_to_string(s.dir.path().join("broker.log")).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let bot = events
        .iter()
        .position(|e| e["event"] == "bot")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(events[bot]["text"], "Hello, slowly.", "{text}");
    let last = events.last().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["name"].as_str()),
        (Some("action"), Some("action_listen")),
        "{text}"
    );
}

#[test]
fn an_action_server_answering_garbage_fails_the_action_only() {
    // An action server that answers 200 with a body Rasa could not use, one kind per request.
    let bodies = [
        "this is not JSON",
        "[1, 2, 3]",
        r#"{"events": "not a list", "responses": []}"#,
        r#"{"events": [{"event": "user"}], "responses": []}"#,
        r#"{"events": [{"event": "slot"}], "responses": "nope"}"#,
        r#"{"events": [{"event": "no_such_event", "x": 1}]}"#,
    ];
    let (port, answered) = fake_action_server(move |n| {
        (
            std::time::Duration::ZERO,
            bodies[n % bodies.len()].to_string(),
        )
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/custom_bot");
    let model = train(&dir);
    let endpoints =
        format!("action_endpoint:\n  url: http://127.0.0.1:{port}/webhook\n  timeout: 5\n");
    let s = Server::builder()
        .arg("-m")
        .arg(model.path().to_str().unwrap())
        .endpoints(&endpoints)
        .start();
    for (n, body) in bodies.iter().enumerate() {
        // Each garbage answer: the action fails, the turn goes on to the next action.
        assert_eq!(
            texts(&say(&s, "garbage", "/fail_me")),
            ["Something failed, but I am still here."],
            "answer {n}: {body}"
        );
    }
    // Nothing the action server sent was stored: every stored event is a valid one, and the
    // conversation reads back whole.
    let (status, t) = s.get("/conversations/garbage/tracker?include_events=ALL");
    assert_eq!(status, 200);
    let events = t["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .all(|e| e["event"] != "user" || e["text"].is_string()),
        "{events:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "action" && e["name"] == "action_fail")
            .count(),
        bodies.len()
    );
    assert!(!events
        .iter()
        .any(|e| e["event"] == "slot" && e["name"].is_null()));
    // Every garbage answer really was sent.
    assert_eq!(
        answered.load(std::sync::atomic::Ordering::SeqCst),
        bodies.len()
    );
    let (status, _) = s.get("/status");
    assert_eq!(status, 200);
}
