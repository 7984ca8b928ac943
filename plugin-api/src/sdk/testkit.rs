//! The contract suite every tracker store and lock store must pass: the built-in in-memory
//! stores, the Redis plugin, and any user's plugin (`colloquy plugin-test`). It talks to the
//! component only through its ABI trait object, exactly as the host does.

use std::time::{Duration, Instant};

use abi_stable::std_types::{ROption, RResult, RString, RVec};

use crate::{EventLog, LockStoreBox, LogPosition, TrackerStoreBox};

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// The outcome of a suite.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<CheckResult>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
    pub fn failures(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }
    /// One line per check, `ok`/`FAILED`, then `N passed, M failed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = if c.passed { "ok" } else { "FAILED" };
            out.push_str(&format!("{mark:>6}  {}", c.name));
            if !c.passed {
                out.push_str(&format!(": {}", c.detail));
            }
            out.push('\n');
        }
        let failed = self.failures().len();
        out.push_str(&format!(
            "{} passed, {} failed\n",
            self.checks.len() - failed,
            failed
        ));
        out
    }
    fn record(&mut self, name: &'static str, outcome: Result<(), String>) {
        let (passed, detail) = match outcome {
            Ok(()) => (true, String::new()),
            Err(d) => (false, d),
        };
        self.checks.push(CheckResult {
            name,
            passed,
            detail,
        });
    }
}

use std::future::{Future, IntoFuture};

async fn r<T>(f: crate::PReply<T>) -> Result<T, String> {
    match f.await {
        RResult::ROk(v) => Ok(v),
        RResult::RErr(e) => Err(e.to_string()),
    }
}

fn evs(items: &[String]) -> RVec<RString> {
    items.iter().map(|s| RString::from(s.as_str())).collect()
}

fn event(i: usize) -> String {
    format!(
        r#"{{"event":"slot","timestamp":{}.5,"name":"n","value":{i}}}"#,
        1_700_000_000 + i
    )
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => { if !$cond { return Err(format!($($fmt)*)); } };
}

/// Runs the tracker-store contract. `prefix` makes the conversation ids unique, so that a
/// store holding other data (a shared Redis) can be tested; ids starting with it are deleted.
pub async fn tracker_store_suite(store: &TrackerStoreBox, prefix: &str) -> Report {
    let mut report = Report::default();
    let id = |s: &str| RString::from(format!("{prefix}{s}"));

    report.record(
        "unknown conversation loads as none",
        async {
            let got = r(store.load(id("never"), 0)).await?;
            ensure!(matches!(got, ROption::RNone), "expected none, got {got:?}");
            Ok(())
        }
        .await,
    );

    report.record(
        "append then load returns the events verbatim and in order",
        async {
            let events: Vec<String> = (0..3).map(event).collect();
            let pos: LogPosition = r(store.append(id("a"), evs(&events))).await?;
            ensure!(pos.length == 3, "length after append: {}", pos.length);
            let log: EventLog = r(store.load(id("a"), 0))
                .await?
                .into_option()
                .ok_or("log missing after append")?;
            let got: Vec<String> = log.events.iter().map(|s| s.to_string()).collect();
            ensure!(got == events, "events differ: {got:?}");
            ensure!(
                log.length == 3 && log.epoch == pos.epoch,
                "length/epoch: {} {} vs {:?}",
                log.length,
                log.epoch,
                pos
            );
            Ok(())
        }
        .await,
    );

    report.record(
        "load from an offset returns only the tail, with the full length",
        async {
            let more: Vec<String> = (3..5).map(event).collect();
            let pos = r(store.append(id("a"), evs(&more))).await?;
            ensure!(
                pos.length == 5,
                "length after second append: {}",
                pos.length
            );
            let log = r(store.load(id("a"), 3))
                .await?
                .into_option()
                .ok_or("log missing")?;
            let got: Vec<String> = log.events.iter().map(|s| s.to_string()).collect();
            ensure!(got == more, "tail differs: {got:?}");
            ensure!(log.length == 5, "length {}", log.length);
            let past = r(store.load(id("a"), 9))
                .await?
                .into_option()
                .ok_or("log missing")?;
            ensure!(
                past.events.is_empty() && past.length == 5,
                "offset past the end: {past:?}"
            );
            Ok(())
        }
        .await,
    );

    report.record(
        "unicode, quotes and large events survive",
        async {
            let big = format!(
                r#"{{"event":"bot","timestamp":1.0,"text":"{}","data":{{"x":"é😀\"\\"}}}}"#,
                "z".repeat(200_000)
            );
            r(store.append(id("u"), evs(std::slice::from_ref(&big)))).await?;
            let log = r(store.load(id("u"), 0))
                .await?
                .into_option()
                .ok_or("log missing")?;
            ensure!(
                log.events.len() == 1 && log.events[0].as_str() == big,
                "event changed"
            );
            Ok(())
        }
        .await,
    );

    report.record(
        "replace starts a new epoch and overwrites",
        async {
            let before = r(store.load(id("a"), 0))
                .await?
                .into_option()
                .ok_or("log missing")?;
            let new: Vec<String> = (10..12).map(event).collect();
            let pos = r(store.replace(id("a"), evs(&new))).await?;
            ensure!(pos.length == 2, "length after replace: {}", pos.length);
            ensure!(
                pos.epoch != before.epoch,
                "epoch unchanged by replace ({})",
                pos.epoch
            );
            let log = r(store.load(id("a"), 0))
                .await?
                .into_option()
                .ok_or("log missing")?;
            let got: Vec<String> = log.events.iter().map(|s| s.to_string()).collect();
            ensure!(got == new, "events after replace: {got:?}");
            let pos2 = r(store.append(id("a"), evs(&[event(12)]))).await?;
            ensure!(
                pos2.epoch == pos.epoch && pos2.length == 3,
                "append after replace: {pos2:?}"
            );
            Ok(())
        }
        .await,
    );

    report.record(
        "replace with no events keeps an existing, empty conversation",
        async {
            r(store.replace(id("empty"), RVec::new())).await?;
            let log = r(store.load(id("empty"), 0)).await?;
            match log {
                ROption::RSome(l) => {
                    ensure!(l.length == 0 && l.events.is_empty(), "not empty: {l:?}")
                }
                ROption::RNone => return Err("an empty replaced conversation must exist".into()),
            }
            Ok(())
        }
        .await,
    );

    report.record(
        "keys lists stored conversations",
        async {
            let keys: Vec<String> = r(store.keys())
                .await?
                .into_iter()
                .map(String::from)
                .collect();
            for k in ["a", "u"] {
                let full = format!("{prefix}{k}");
                ensure!(keys.contains(&full), "{full} missing from keys {keys:?}");
            }
            ensure!(
                !keys.contains(&format!("{prefix}never")),
                "a never-stored id is listed"
            );
            Ok(())
        }
        .await,
    );

    report.record(
        "concurrent appends to one conversation lose nothing",
        async {
            let futures: Vec<_> = (0..50)
                .map(|i| store.append(id("c"), evs(&[event(i), event(i + 1000)])))
                .collect();
            for f in futures {
                r(f).await?;
            }
            let log = r(store.load(id("c"), 0))
                .await?
                .into_option()
                .ok_or("log missing")?;
            ensure!(
                log.length == 100 && log.events.len() == 100,
                "expected 100 events, got {}",
                log.length
            );
            // Each two-event append is atomic: its events are adjacent.
            for pair in log.events.chunks(2) {
                let a: serde_json::Value =
                    serde_json::from_str(&pair[0]).map_err(|e| e.to_string())?;
                let b: serde_json::Value =
                    serde_json::from_str(&pair[1]).map_err(|e| e.to_string())?;
                ensure!(
                    a["value"].as_i64().map(|v| v + 1000) == b["value"].as_i64(),
                    "appends interleaved: {a} {b}"
                );
            }
            Ok(())
        }
        .await,
    );

    report.record(
        "delete removes a conversation",
        async {
            ensure!(
                r(store.delete(id("u"))).await?,
                "delete of an existing id returned false"
            );
            ensure!(
                !r(store.delete(id("u"))).await?,
                "second delete returned true"
            );
            let got = r(store.load(id("u"), 0)).await?;
            ensure!(
                matches!(got, ROption::RNone),
                "deleted conversation still loads"
            );
            Ok(())
        }
        .await,
    );

    report.record(
        "health reports ok",
        async {
            let h = r(store.health()).await?;
            let v: serde_json::Value =
                serde_json::from_str(&h).map_err(|e| format!("health is not JSON: {e}"))?;
            ensure!(v["ok"] == serde_json::Value::Bool(true), "health: {h}");
            Ok(())
        }
        .await,
    );

    report.record(
        "unknown call is refused as unsupported",
        async {
            match store.call("no-such-op".into(), "{}".into()).await {
                RResult::RErr(e) => {
                    ensure!(e.kind == crate::ErrorKind::UNSUPPORTED, "kind {:?}", e.kind)
                }
                RResult::ROk(v) => return Err(format!("unexpected answer {v}")),
            }
            Ok(())
        }
        .await,
    );

    report.record(
        "a store claiming immediate_reads answers load on its first poll",
        async {
            let claimed = match store.call(crate::ops::CAPABILITIES.into(), "".into()).await {
                RResult::ROk(text) => serde_json::from_str::<crate::StoreCapabilities>(&text)
                    .map_err(|e| format!("capabilities are not their JSON: {e}"))?,
                RResult::RErr(_) => crate::StoreCapabilities::default(),
            };
            if !claimed.immediate_reads {
                return Ok(());
            }
            ensure!(
                claimed.sole_writer,
                "immediate_reads is used only with sole_writer"
            );
            // As the host reads it: a ready reply, or a future ready on its first poll.
            let outcome = match store.load(id("a"), 0) {
                crate::PReply::Ready(outcome) => outcome,
                crate::PReply::Pending(mut load) => {
                    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                    match std::pin::Pin::new(&mut load).poll(&mut cx) {
                        std::task::Poll::Ready(outcome) => outcome,
                        std::task::Poll::Pending => {
                            return Err("load was not ready on its first poll".into())
                        }
                    }
                }
            };
            match outcome {
                RResult::ROk(ROption::RSome(_)) => Ok(()),
                other => Err(format!("load of a stored conversation: {other:?}")),
            }
        }
        .await,
    );

    for k in ["a", "c", "empty", "u"] {
        let _ = store.delete(id(k)).await;
    }
    report
}

/// Runs the lock-store contract.
pub async fn lock_store_suite(locks: &LockStoreBox, prefix: &str) -> Report {
    let mut report = Report::default();
    let id = |s: &str| RString::from(format!("{prefix}{s}"));

    report.record(
        "acquire and release",
        async {
            let t = r(locks.acquire(id("l1"), 5_000, 1_000)).await?;
            r(locks.release(id("l1"), t)).await?;
            let t = r(locks.acquire(id("l1"), 5_000, 1_000)).await?;
            r(locks.release(id("l1"), t)).await
        }
        .await,
    );

    report.record(
        "a held lock makes others wait, then times out",
        async {
            let t = r(locks.acquire(id("l2"), 10_000, 1_000)).await?;
            let start = Instant::now();
            let second = locks.acquire(id("l2"), 10_000, 300).await;
            ensure!(
                matches!(second, RResult::RErr(_)),
                "second acquire succeeded while held"
            );
            ensure!(
                start.elapsed() >= Duration::from_millis(250),
                "gave up too early: {:?}",
                start.elapsed()
            );
            r(locks.release(id("l2"), t)).await
        }
        .await,
    );

    report.record(
        "release wakes the next waiter promptly",
        async {
            let t = r(locks.acquire(id("l3"), 10_000, 1_000)).await?;
            let waiter = locks.acquire(id("l3"), 10_000, 5_000).into_future();
            let releaser = async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let at = Instant::now();
                r(locks.release(id("l3"), t)).await.map(|_| at)
            };
            let (got, released_at) = futures::join!(waiter, releaser);
            let released_at = released_at?;
            let t2 = match got {
                RResult::ROk(t) => t,
                RResult::RErr(e) => return Err(format!("waiter failed: {e}")),
            };
            ensure!(
                released_at.elapsed() < Duration::from_millis(900),
                "wake-up took {:?}",
                released_at.elapsed()
            );
            r(locks.release(id("l3"), t2)).await
        }
        .await,
    );

    report.record(
        "waiters are served in FIFO order",
        async {
            let t = r(locks.acquire(id("l4"), 10_000, 1_000)).await?;
            let order = std::sync::Mutex::new(Vec::new());
            let waiter = |n: u32, delay: u64| {
                let order = &order;
                async move {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let t = r(locks.acquire(id("l4"), 10_000, 5_000)).await?;
                    order.lock().unwrap().push(n);
                    r(locks.release(id("l4"), t)).await
                }
            };
            let release = async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                r(locks.release(id("l4"), t)).await
            };
            let (a, b, c, d) = futures::join!(waiter(1, 0), waiter(2, 60), waiter(3, 120), release);
            a?;
            b?;
            c?;
            d?;
            let order = order.into_inner().unwrap();
            ensure!(order == vec![1, 2, 3], "order {order:?}");
            Ok(())
        }
        .await,
    );

    report.record(
        "an expired holder loses the lock",
        async {
            let _never_released = r(locks.acquire(id("l5"), 200, 1_000)).await?;
            let start = Instant::now();
            let t = r(locks.acquire(id("l5"), 5_000, 3_000)).await?;
            ensure!(
                start.elapsed() < Duration::from_millis(2_000),
                "took {:?}",
                start.elapsed()
            );
            r(locks.release(id("l5"), t)).await
        }
        .await,
    );

    report.record(
        "health reports ok",
        async {
            let h = r(locks.health()).await?;
            let v: serde_json::Value =
                serde_json::from_str(&h).map_err(|e| format!("health is not JSON: {e}"))?;
            ensure!(v["ok"] == serde_json::Value::Bool(true), "health: {h}");
            Ok(())
        }
        .await,
    );

    report
}
