//! The command line: `colloquy run | plugins | plugin-test`, with Rasa's flag spellings
//! (3.x `--enable-api` and the rasa_core `--enable_api` alike, decisions §1).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "colloquy",
    version,
    about = "A conversation server that speaks Rasa's HTTP API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments, reading a value that starts with `-` as argparse does.
    pub fn parse_args() -> Cli {
        Cli::parse_from(argparse_values(std::env::args_os()))
    }
}

/// argparse (Rasa's CLI) takes an argument that starts with `-` but contains a space as a
/// value, not a flag: `rasa run --jwt-secret "$(cat public.pem)"` passes the PEM text
/// (`-----BEGIN PUBLIC KEY-----…`). clap would read it as an unknown flag, so such a value is
/// joined to the long flag before it (`--jwt-secret=-----BEGIN…`).
pub fn argparse_values(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = Vec::new();
    for arg in args {
        let value_like = arg
            .to_str()
            .is_some_and(|a| a.starts_with('-') && a.contains(char::is_whitespace));
        if let (true, Some(prev)) = (value_like, out.last_mut()) {
            let flag = prev.to_str().unwrap_or("");
            if flag.starts_with("--") && flag.len() > 2 && !flag.contains('=') {
                prev.push("=");
                prev.push(&arg);
                continue;
            }
        }
        out.push(arg);
    }
    out
}

// Parsed once at start-up: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a model over HTTP (Rasa's `rasa run`).
    Run(RunArgs),
    /// List the plugins found (name, kinds, version, file) and why any were rejected.
    Plugins(PluginDirArgs),
    /// Run the store contract suite against a plugin library.
    PluginTest(PluginTestArgs),
    /// Create a standalone plugin crate (a working in-memory implementation) to start from.
    NewPlugin(NewPluginArgs),
    /// Chat with a model (or a running server) in the terminal.
    Shell(ShellArgs),
    /// Evaluate: `colloquy test nlu --cross-validation`.
    #[command(subcommand)]
    Test(TestCommand),
    /// Train a model from a Rasa project (`rasa train`): domain, config and training data.
    Train(TrainArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct PluginDirArgs {
    /// A directory searched for plugin libraries (repeatable); searched before
    /// COLLOQUY_PLUGIN_PATH, ./plugins and the executable's directory.
    #[arg(long = "plugin-dir", alias = "plugin_dir")]
    pub plugin_dirs: Vec<PathBuf>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Serve the HTTP API (otherwise only `/`, `/version` and the channels).
    #[arg(long = "enable-api", alias = "enable_api")]
    pub enable_api: bool,
    /// A model archive, or a directory whose newest archive is used (`-d/--core` in rasa_core).
    #[arg(
        short = 'm',
        long = "model",
        visible_short_alias = 'd',
        visible_alias = "core"
    )]
    pub model: Option<PathBuf>,
    /// The endpoints YAML (stores, broker, NLU, model server, action server).
    #[arg(long = "endpoints", default_value = "endpoints.yml")]
    pub endpoints: PathBuf,
    /// Channel credentials YAML.
    #[arg(long = "credentials")]
    pub credentials: Option<PathBuf>,
    /// Address to listen on.
    #[arg(short = 'i', long = "interface", default_value = "0.0.0.0")]
    pub interface: String,
    #[arg(short = 'p', long = "port", default_value_t = 5005)]
    pub port: u16,
    /// Requests must carry `?token=<this>` (or a valid JWT).
    #[arg(
        long = "auth-token",
        alias = "auth_token",
        env = "COLLOQUY_AUTH_TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,
    /// JWT secret (HMAC methods) or public key, PEM text or file (asymmetric methods).
    #[arg(
        long = "jwt-secret",
        alias = "jwt_secret",
        env = "COLLOQUY_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    #[arg(long = "jwt-method", alias = "jwt_method", default_value = "HS256")]
    pub jwt_method: String,
    /// Accepted for compatibility with `rasa run`; not used for verification.
    #[arg(long = "jwt-private-key", alias = "jwt_private_key", hide = true)]
    pub jwt_private_key: Option<String>,
    /// Allowed CORS origins (`*` for any); repeatable.
    #[arg(long = "cors", num_args = 0..)]
    pub cors: Vec<String>,
    /// Log file (`-o` in rasa_core); logs go to stderr otherwise.
    #[arg(short = 'o', long = "log-file", alias = "log_file")]
    pub log_file: Option<PathBuf>,
    /// Seconds to wait for a response on channels.
    #[arg(long = "response-timeout", default_value_t = 3600)]
    pub response_timeout: u64,
    /// NLU model (`-u project/model` for a rasa_core NLU server).
    #[arg(short = 'u', long = "nlu")]
    pub nlu: Option<String>,
    #[command(flatten)]
    pub plugins: PluginDirArgs,
    /// Bound on every plugin call (store, lock, broker), in seconds.
    #[arg(long = "plugin-timeout", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub plugin_timeout: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long = "max-body-bytes", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most events one request may post (`…/tracker/events`, `/model/predict`).
    #[arg(long = "max-events-per-request", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events_per_request: u64,
    /// Most events a conversation may hold; appends beyond it are refused (400), nothing stored.
    #[arg(long = "max-events-per-conversation", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events_per_conversation: u64,
    /// Longest conversation id (characters).
    #[arg(long = "max-conversation-id-length", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_conversation_id_length: u64,
    /// Most client connections served at once; further clients wait until one closes.
    #[arg(long = "max-connections", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Seconds a client has to send a request's head (idle keep-alive connections too).
    #[arg(long = "header-read-timeout", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout: u64,
    /// Longest pause, in seconds, between two chunks of a request body (then 408).
    #[arg(long = "body-read-timeout", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout: u64,
    /// Conversations kept in memory between requests (their events' texts and tracker states;
    /// parsed events too for conversations with turns).
    #[arg(long = "cache-conversations", default_value_t = 1_000)]
    pub cache_conversations: usize,
    /// Verbose logs (`RUST_LOG` overrides).
    #[arg(short = 'v', long = "verbose", alias = "debug")]
    pub verbose: bool,
    #[arg(long = "ssl-certificate", hide = true)]
    pub ssl_certificate: Option<PathBuf>,
    #[arg(long = "ssl-keyfile", hide = true)]
    pub ssl_keyfile: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct PluginTestArgs {
    /// The plugin library (`.so`), or a plugin name found in the search path.
    pub plugin: String,
    /// `tracker-store` or `lock-store`.
    #[arg(long)]
    pub kind: String,
    /// The component's config as JSON (what the endpoints YAML section would hold, without `type`).
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// Prefix for the conversation ids the suite writes (and deletes).
    #[arg(long, default_value = "colloquy-contract-")]
    pub prefix: String,
    #[command(flatten)]
    pub plugins: PluginDirArgs,
}

#[derive(Debug, Args, Clone)]
pub struct NewPluginArgs {
    /// tracker-store, lock-store, event-broker, nlu-connector or model-source.
    pub kind: String,
    /// The plugin's name, written as `type:` in the endpoints YAML ([a-z][a-z0-9_]*).
    pub name: String,
    /// The directory in which the crate's folder `<name>` is created (default: here).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The `plugin-api` directory to build against (default: the one this colloquy was
    /// built from).
    #[arg(long = "plugin-api-path")]
    pub plugin_api_path: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct TrainArgs {
    /// The domain file, or a directory of domain files.
    #[arg(short = 'd', long, default_value = "domain.yml")]
    pub domain: PathBuf,
    /// Training data (files or directories; repeatable).
    #[arg(long, default_values = ["data"], num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// The config file (policies, pipeline); Rasa's defaults when it does not exist.
    #[arg(short = 'c', long, default_value = "config.yml")]
    pub config: PathBuf,
    /// Where the model archive goes.
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// The archive's name instead of a timestamp.
    #[arg(long = "fixed-model-name")]
    pub fixed_model_name: Option<String>,
    /// Train even when the inputs did not change.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ShellArgs {
    /// A model archive or a directory of archives (served in this process).
    #[arg(short = 'm', long = "model", visible_short_alias = 'd')]
    pub model: Option<PathBuf>,
    /// Talk to a running Colloquy (or Rasa) server's REST channel instead.
    #[arg(long)]
    pub url: Option<String>,
    /// Endpoints YAML (e.g. for an action server).
    #[arg(long, default_value = "endpoints.yml")]
    pub endpoints: PathBuf,
    /// The conversation id.
    #[arg(long, default_value = "shell")]
    pub sender: String,
}

#[derive(Debug, Subcommand, Clone)]
pub enum TestCommand {
    /// NLU quality with k-fold cross-validation (Rasa's report layout, as JSON).
    Nlu(TestNluArgs),
}

#[derive(Debug, Args, Clone)]
pub struct TestNluArgs {
    /// NLU data (files or directories).
    #[arg(long, default_values = ["data"], num_args = 1..)]
    pub nlu: Vec<PathBuf>,
    /// Run k-fold cross-validation (the only mode so far).
    #[arg(long = "cross-validation")]
    pub cross_validation: bool,
    #[arg(short = 'f', long, default_value_t = 5)]
    pub folds: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the report goes (also printed).
    #[arg(long, default_value = "results/intent_report.json")]
    pub out: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(argparse_values(args.iter().map(OsString::from))).unwrap()
    }

    #[test]
    fn a_pem_value_after_a_flag_is_a_value_as_in_argparse() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n";
        for flag in ["--jwt-secret", "--jwt_secret"] {
            let cli = parse(&[
                "colloquy",
                "run",
                flag,
                pem,
                "--jwt-method",
                "ES256",
                "--enable-api",
            ]);
            let Command::Run(args) = cli.command else {
                panic!("run")
            };
            assert_eq!(args.jwt_secret.as_deref(), Some(pem));
            assert_eq!(args.jwt_method, "ES256");
            assert!(args.enable_api);
        }
        // Flags and values without spaces are left alone.
        assert_eq!(
            argparse_values(["run", "--jwt-secret", "-x", "-p", "1"].map(OsString::from)),
            ["run", "--jwt-secret", "-x", "-p", "1"]
        );
        assert_eq!(
            argparse_values(["run", "--jwt-secret=a", "- b"].map(OsString::from)),
            ["run", "--jwt-secret=a", "- b"]
        );
    }
}
