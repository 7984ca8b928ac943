//! Forwards the plugin's `tracing` events to the host's log.
//!
//! A plugin's `tracing` globals are its own copy: without this subscriber its logs vanish.

use std::io::{self, Write};
use std::sync::OnceLock;

use abi_stable::std_types::RStr;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use crate::{HostApiBox, LogLevel};

static INSTALLED: OnceLock<()> = OnceLock::new();

/// Installs (once per plugin library) a subscriber that sends each event to the host.
/// Events at debug level and above are forwarded; the host's filter decides what is shown.
pub fn install_host_logger(host: HostApiBox) {
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(HostWriter { host })
            .without_time()
            .with_level(false)
            .with_target(false)
            .with_ansi(false)
            .with_max_level(Level::DEBUG)
            .finish();
        // Fails only when another subscriber is already global (e.g. a plugin built into the
        // host's own binary shares the host's tracing); then events already reach the host.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

struct HostWriter {
    host: HostApiBox,
}

/// Collects one formatted event and hands it to the host when dropped.
pub struct HostLine {
    host: HostApiBox,
    level: LogLevel,
    target: String,
    buf: Vec<u8>,
}

impl Write for HostLine {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for HostLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if !text.is_empty() {
            self.host.log(
                self.level as u8,
                RStr::from_str(&self.target),
                RStr::from_str(text),
            );
        }
    }
}

impl<'a> MakeWriter<'a> for HostWriter {
    type Writer = HostLine;

    fn make_writer(&'a self) -> HostLine {
        HostLine {
            host: self.host.clone(),
            level: LogLevel::Info,
            target: "plugin".to_string(),
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> HostLine {
        let level = match *meta.level() {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            Level::TRACE => LogLevel::Trace,
        };
        HostLine {
            host: self.host.clone(),
            level,
            target: meta.target().to_string(),
            buf: Vec::new(),
        }
    }
}
