//! Trained models and action servers for the dialogue tests.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{colloquy_bin, free_port, shared};

/// A model trained into a temporary directory (kept alive with the value).
pub struct TrainedModel {
    pub dir: tempfile::TempDir,
}

impl TrainedModel {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Trains `<project>` (a directory with domain.yml, config.yml and data/) with `colloquy train`.
pub fn train(project: &Path) -> TrainedModel {
    let dir = tempfile::tempdir().unwrap();
    let config = project.join("config.yml");
    let out = Command::new(colloquy_bin())
        .args(["train", "--domain"])
        .arg(project.join("domain.yml"))
        .arg("--data")
        .arg(project.join("data"))
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "training {} failed:\n{}{}",
        project.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    TrainedModel { dir }
}

/// One of Rasa's example bots, read in place from `shared/rasa/rasa-3.6.4/examples/`.
pub fn rasa_example(name: &str) -> PathBuf {
    shared(&format!("rasa/rasa-3.6.4/examples/{name}"))
}

/// The bot bundled with Colloquy.
pub fn hello_bot() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello-bot")
}

/// A real `rasa_sdk` action server (`python3 -m rasa_sdk`) serving `module` from `dir`.
pub struct ActionServer {
    pub port: u16,
    child: Child,
}

impl ActionServer {
    pub fn start(dir: &Path, module: &str) -> ActionServer {
        let port = free_port();
        let child = Command::new("python3")
            .current_dir(dir)
            .args([
                "-m",
                "rasa_sdk",
                "--actions",
                module,
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that Sanic's worker processes die with it.
            .process_group(0)
            .spawn()
            .expect("python3 -m rasa_sdk starts (pip install rasa-sdk; scripts/setup.sh does it)");
        let server = ActionServer { port, child };
        let client = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if client
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "the rasa_sdk action server did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhook", self.port)
    }
}

impl Drop for ActionServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The formbot actions of the tests.
pub fn formbot_actions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/formbot_actions")
}
