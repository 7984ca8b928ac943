//! Model management: `-m`, `PUT`/`DELETE /model`, `POST /model` (0.x upload),
//! `POST /model/train`, and a model source in the endpoints YAML.

use std::time::{Duration, Instant};

use colloquy_blackbox_tests::bots::{hello_bot, rasa_example, train};
use colloquy_blackbox_tests::{assert_rasa_error, Server};
use serde_json::{json, Value};

fn newest(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .unwrap()
}

#[test]
fn put_delete_and_upload_swap_the_model() {
    let mood = train(&rasa_example("moodbot"));
    let cafe = train(&hello_bot());
    let s = Server::builder()
        .arg("-m")
        .arg(mood.path().to_str().unwrap())
        .start();
    let (_, status) = s.get("/status");
    let first_id = status["model_id"].as_str().unwrap().to_string();
    assert!(status["model_file"].as_str().unwrap().ends_with(".tar.gz"));
    assert_eq!(status["model_fingerprint"].as_str().unwrap().len(), 64);
    // Case 39: PUT /model.
    let r = s.client.put(s.url("/model")).send().unwrap();
    assert_eq!(r.status(), 400);
    let (st, e) = s.put("/model", &json!({"model_file": "some-random-path"}));
    assert_rasa_error(st, &e, 400);
    let r = s
        .client
        .put(s.url("/model"))
        .json(&json!({"model_file": newest(cafe.path())}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, status) = s.get("/status");
    assert_ne!(status["model_id"], first_id.as_str());
    let r = s
        .client
        .get(s.url("/domain"))
        .header("accept", "application/json")
        .send()
        .unwrap();
    assert!(r.json::<Value>().unwrap()["forms"]
        .get("coffee_form")
        .is_some());
    // New events carry the new model's id.
    let (_, t) = s.post(
        "/conversations/x/tracker/events",
        &json!({"event": "pause"}),
    );
    assert_eq!(t["events"][3]["metadata"]["model_id"], status["model_id"]);
    // DELETE: model routes answer 409, the tracker API keeps working.
    let r = s.client.delete(s.url("/model")).send().unwrap();
    assert_eq!(r.status(), 204);
    let (st, e) = s.post(
        "/webhooks/rest/webhook",
        &json!({"sender": "a", "message": "/greet"}),
    );
    assert_rasa_error(st, &e, 409);
    assert_eq!(s.get("/conversations/x/tracker").0, 200);
    assert_eq!(s.get("/status").1["is_ready"], false);
    // POST /model (0.x): a multipart upload of the archive.
    let bytes = std::fs::read(newest(mood.path())).unwrap();
    let form = reqwest::blocking::multipart::Form::new().part(
        "model",
        reqwest::blocking::multipart::Part::bytes(bytes).file_name("../../evil.tar.gz"),
    );
    let r = s
        .client
        .post(s.url("/model"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, status) = s.get("/status");
    assert_eq!(
        status["model_file"], "evil.tar.gz",
        "the upload's file name is a label, not a path"
    );
    assert_eq!(status["model_id"], first_id.as_str());
    // A corrupt upload is refused and the current model keeps serving.
    let form = reqwest::blocking::multipart::Form::new().part(
        "model",
        reqwest::blocking::multipart::Part::bytes(b"not a tar.gz".to_vec()).file_name("m.tar.gz"),
    );
    let r = s
        .client
        .post(s.url("/model"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(s.get("/status").1["model_id"], first_id.as_str());
    let form = reqwest::blocking::multipart::Form::new().text("other", "x");
    assert_eq!(
        s.client
            .post(s.url("/model"))
            .multipart(form)
            .send()
            .unwrap()
            .status(),
        400
    );
}

#[test]
fn train_over_http_returns_an_archive() {
    let s = Server::builder().start();
    let project = rasa_example("moodbot");
    let mut doc = String::new();
    for f in [
        "domain.yml",
        "config.yml",
        "data/nlu.yml",
        "data/stories.yml",
        "data/rules.yml",
    ] {
        let text = std::fs::read_to_string(project.join(f)).unwrap();
        for line in text.lines().filter(|l| !l.starts_with("version:")) {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    let r = s
        .client
        .post(s.url("/model/train?save_to_default_model_directory=false"))
        .header("content-type", "application/x-yaml")
        .body(doc)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let name = r
        .headers()
        .get("filename")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(name.ends_with(".tar.gz"), "{name}");
    let bytes = r.bytes().unwrap();
    assert!(
        bytes.len() > 100 && bytes[0] == 0x1f && bytes[1] == 0x8b,
        "a gzip archive"
    );
    // The new model is not loaded (3.6).
    assert_eq!(s.get("/status").1["is_ready"], false);
    let r = s
        .client
        .post(s.url("/model/train"))
        .body("intents: [")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .client
        .post(s.url("/model/train"))
        .body("")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn a_model_source_in_the_endpoints_file_loads_after_start() {
    let cafe = train(&hello_bot());
    let yaml = format!(
        "models:\n  type: local\n  path: {}\n",
        cafe.path().display()
    );
    let s = Server::builder().endpoints(&yaml).start();
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.get("/status").1["is_ready"] != true {
        assert!(Instant::now() < deadline, "the model was not loaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, r) = s.post(
        "/webhooks/rest/webhook",
        &json!({"sender": "a", "message": "/ask_hours"}),
    );
    assert_eq!(st, 200);
    assert_eq!(r[0]["text"], "We are open every day from 7am to 7pm.");
    // A missing model file is a start-up error naming it.
    let err = Server::builder()
        .arg("-m")
        .arg("/no/such/model.tar.gz")
        .try_start()
        .err()
        .unwrap();
    assert!(err.contains("/no/such/model.tar.gz"), "{err}");
}
