//! `hello-axum PORT`: the bare axum server that is the ceiling of the machine in bench/run.sh.
//! `GET /` answers "Hello, World!"; any other request reads its body and answers the same, so
//! that the POST workloads have a like-for-like ceiling too. Worker threads: TOKIO_WORKER_THREADS.

use axum::body::Bytes;
use axum::routing::get;
use axum::Router;

async fn hello() -> &'static str {
    "Hello, World!"
}

async fn any(body: Bytes) -> &'static str {
    std::hint::black_box(body);
    "Hello, World!"
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let app = Router::new().route("/", get(hello)).fallback(any);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    println!("listening on {}", listener.local_addr().expect("addr"));
    axum::serve(listener, app).await.expect("serve");
}
