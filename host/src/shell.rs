//! `colloquy shell`: chat with a bot in the terminal, either a model loaded in this process
//! (in-memory stores, no API) or a running server (`--url`, through its REST channel).

use std::io::{BufRead, Write};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::cli::{RunArgs, ShellArgs};
use crate::dialogue::output::ChannelMessage;
use crate::dialogue::UserMessage;

fn print_messages(out: &mut impl Write, messages: &[Value]) -> std::io::Result<()> {
    for m in messages {
        if let Some(t) = m.get("text").and_then(Value::as_str) {
            writeln!(out, "bot> {t}")?;
        }
        if let Some(buttons) = m.get("buttons").and_then(Value::as_array) {
            for (i, b) in buttons.iter().enumerate() {
                let title = b.get("title").and_then(Value::as_str).unwrap_or("");
                let payload = b.get("payload").and_then(Value::as_str).unwrap_or("");
                writeln!(out, "      {}: {title} ({payload})", i + 1)?;
            }
        }
        for key in ["image", "attachment", "custom"] {
            if let Some(v) = m.get(key) {
                writeln!(out, "bot> [{key}] {v}")?;
            }
        }
    }
    Ok(())
}

/// Runs the shell until end of input or `/stop`.
pub async fn run(args: ShellArgs) -> Result<(), String> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let sender = args.sender.clone();
    let client = reqwest::Client::new();
    let local = match &args.url {
        Some(_) => None,
        None => {
            let model = args
                .model
                .clone()
                .ok_or("give a model with -m (or --url of a running server)")?;
            let run = RunArgs {
                model: Some(model),
                endpoints: args.endpoints.clone(),
                ..RunArgs::default()
            };
            let endpoints = crate::server::load_endpoints(&run).map_err(|e| e.to_string())?;
            let (state, _) =
                tokio::task::block_in_place(|| crate::server::build_state(&run, &endpoints))
                    .map_err(|e| e.to_string())?;
            Some(state)
        }
    };
    writeln!(
        out,
        "Bot loaded. Type a message and press enter (use '/stop' to exit):"
    )
    .map_err(|e| e.to_string())?;
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if text == "/stop" {
            break;
        }
        let messages: Vec<Value> = match (&local, &args.url) {
            (Some(state), _) => {
                let agent = state.agent().ok_or("no model loaded")?;
                let msg = UserMessage {
                    sender_id: sender.clone(),
                    text: Some(text.to_string()),
                    input_channel: Some("cmdline".into()),
                    ..Default::default()
                };
                match state
                    .processor
                    .handle_message(state, Arc::clone(&agent), msg)
                    .await
                {
                    Ok(o) => o.messages.iter().map(ChannelMessage::to_value).collect(),
                    Err(e) => return Err(e.message),
                }
            }
            (None, Some(url)) => {
                let endpoint = format!("{}/webhooks/rest/webhook", url.trim_end_matches('/'));
                let r = client
                    .post(&endpoint)
                    .json(&json!({"sender": sender, "message": text}))
                    .send()
                    .await
                    .map_err(|e| format!("{endpoint}: {e}"))?;
                r.json::<Vec<Value>>()
                    .await
                    .map_err(|e| format!("{endpoint}: {e}"))?
            }
            (None, None) => unreachable!("checked above"),
        };
        print_messages(&mut out, &messages).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}
