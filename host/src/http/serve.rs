//! Serving the router: at most `--max-connections` connections at a time (further clients
//! wait in the listen backlog until one closes), a `--header-read-timeout` for each request's
//! head (slow or idle clients are disconnected), and graceful shutdown. The body has its own
//! bound between chunks (`--body-read-timeout`, in the router).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The listen backlog: connections the kernel completes before they are accepted. tokio's
/// `TcpListener::bind` uses std's 128, so a burst of a few hundred connects overflowed it and
/// the clients beyond stalled 1–8 s in SYN-ACK retransmits (and clients over
/// `--max-connections` could not wait there). The kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (`host:port`, resolved; the first address that binds wins) with
/// [`LISTEN_BACKLOG`].
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As tokio's and std's `bind`: a restarted server can take the port at once.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// How long shutdown waits for the connections in flight and then for the requests whose
    /// clients hung up (`abandoned`), all told.
    pub drain_timeout: Duration,
    /// The requests whose clients hung up, still running ([`super::finish`]): they finish
    /// before `serve` returns, so before the stores and the broker are closed.
    pub abandoned: super::finish::Abandoned,
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in flight,
/// and those whose clients hung up, finish (up to `drain_timeout`).
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) where
    S: tower::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let max = opts
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut close_rx = close_rx.clone();
        let header_timeout = opts.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("connection ended: {e}");
                    }
                }
                _ = close_rx.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
        });
    }
    drop(listener);
    let _ = close_tx.send(());
    // Every connection holds a permit: having them all back means every connection is done.
    let deadline = tokio::time::Instant::now() + opts.drain_timeout;
    if tokio::time::timeout_at(deadline, permits.acquire_many(max as u32))
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown: connections still open after {:?}",
            opts.drain_timeout
        );
    }
    let abandoned = opts.abandoned;
    if abandoned.running() > 0 {
        tracing::info!(
            running = abandoned.running(),
            "shutting down: waiting for requests whose clients hung up"
        );
        if tokio::time::timeout_at(deadline, abandoned.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = abandoned.running(),
                "shutdown: requests still running after {:?}",
                opts.drain_timeout
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 300 connects complete without a single accept (std's backlog of 128 would stall the
    /// 130th in SYN retransmits, beyond the 1 s timeout).
    #[tokio::test]
    async fn the_backlog_holds_a_burst_of_connects() {
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if somaxconn < 300 {
            eprintln!("skipped: net.core.somaxconn is {somaxconn}");
            return;
        }
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = tokio::task::spawn_blocking(move || {
            (0..300)
                .map(|i| {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                        .unwrap_or_else(|e| panic!("connect {i}: {e}"))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        assert_eq!(conns.len(), 300);
        drop(listener);
    }
}
