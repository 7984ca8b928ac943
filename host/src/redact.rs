//! Texts about outgoing HTTP calls without their credentials: endpoint URLs may carry a
//! password (`http://user:pw@host/`) and the query a token (`?token=`, added from the
//! endpoint's `token`); reqwest's error text holds the full request URL. Logs and error bodies
//! use these instead.

/// `raw` without user info, query and fragment (the text unchanged when it is not a URL, as
/// far as it can be cut at `?`).
pub fn url(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => raw.split(['?', '#']).next().unwrap_or("").to_string(),
    }
}

/// A transport error's text without the request URL, with its causes (the bare reqwest
/// message is only "error sending request").
pub fn transport_error(e: reqwest::Error) -> String {
    colloquy_plugin_api::sdk::error_chain(&e.without_url())
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            super::url("http://u:pw@h:1/webhook?token=s&x=1#f"),
            "http://h:1/webhook"
        );
        assert_eq!(super::url("http://h/x"), "http://h/x");
        assert_eq!(super::url("not a url?token=s"), "not a url");
    }

    #[tokio::test]
    async fn transport_errors_lose_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = reqwest::Client::new()
            .post(format!("http://u:pw@127.0.0.1:{port}/w?token=s3cret"))
            .send()
            .await
            .unwrap_err();
        let text = super::transport_error(e);
        assert!(!text.contains("s3cret") && !text.contains("pw"), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }
}
