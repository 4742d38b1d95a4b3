//! The controller's two HTTP endpoints (DESIGN.md §6): Prometheus text at `/metrics`, and the
//! kubelet's probes at `/healthz` and `/readyz`. Each server binds before it returns, so callers
//! learn the address (tests pass port 0) and a port already in use fails at start-up.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// The content type of Prometheus' text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A server running in a background task until its shutdown future completes.
#[derive(Debug)]
pub struct Server {
    /// Where it listens (the real port when port 0 was asked for).
    pub address: SocketAddr,
    handle: JoinHandle<io::Result<()>>,
}

impl Server {
    /// Waits until the server has stopped (after its shutdown future completed).
    pub async fn stopped(self) -> io::Result<()> {
        match self.handle.await {
            Ok(result) => result,
            Err(join) => Err(io::Error::other(join.to_string())),
        }
    }
}

/// What `/readyz` answers from. Clones share one state.
///
/// Ready means the caches are synced and, on the leader, the mutating loops run: a standby
/// with warm caches is ready (it can take over at once), a leader whose loops have not started
/// is not.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    state: Arc<ReadinessState>,
}

#[derive(Debug, Default)]
struct ReadinessState {
    caches_synced: AtomicBool,
    leading: AtomicBool,
    loops_running: AtomicBool,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_caches_synced(&self, synced: bool) {
        self.state.caches_synced.store(synced, Ordering::SeqCst);
    }

    pub fn set_leading(&self, leading: bool) {
        self.state.leading.store(leading, Ordering::SeqCst);
    }

    pub fn set_loops_running(&self, running: bool) {
        self.state.loops_running.store(running, Ordering::SeqCst);
    }

    /// `Ok` when ready, else what is missing in a few words.
    pub fn is_ready(&self) -> Result<(), String> {
        let state = &self.state;
        let mut missing = Vec::new();
        if !state.caches_synced.load(Ordering::SeqCst) {
            missing.push("caches not synced");
        }
        if state.leading.load(Ordering::SeqCst) && !state.loops_running.load(Ordering::SeqCst) {
            missing.push("leading but the control loops are not running");
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    }
}

/// Serves `GET /metrics` on `address` until `shutdown` completes.
pub async fn serve_metrics(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<Server> {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(metrics);
    serve(address, app, shutdown).await
}

/// Serves `GET /healthz` (200 while the process runs) and `GET /readyz` (200 when `readiness`
/// says so, else 503 naming what is missing) on `address` until `shutdown` completes.
pub async fn serve_health(
    address: SocketAddr,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<Server> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(readiness);
    serve(address, app, shutdown).await
}

async fn serve(
    address: SocketAddr,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<Server> {
    let listener = TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    let handle = tokio::spawn(async move { server.await });
    Ok(Server { address, handle })
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    }
}

async fn ready(State(readiness): State<Readiness>) -> Response {
    match readiness.is_ready() {
        Ok(()) => "ok".into_response(),
        Err(missing) => (StatusCode::SERVICE_UNAVAILABLE, missing).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;
    use tokio::time::timeout;

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(20);

    fn any_port() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    struct Reply {
        status: u16,
        headers: String,
        body: String,
    }

    /// One HTTP/1.1 GET over a fresh connection, read until the server closes it.
    async fn http_get(address: SocketAddr, path: &str) -> Reply {
        let exchange = async {
            let mut stream = TcpStream::connect(address).await.expect("connects");
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            stream
                .write_all(request.as_bytes())
                .await
                .expect("sends the request");
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.expect("reads the reply");
            String::from_utf8(raw).expect("a UTF-8 reply")
        };
        let raw = timeout(PATIENCE, exchange).await.expect("a reply in time");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        Reply {
            status,
            headers: head.to_ascii_lowercase(),
            body: body.to_string(),
        }
    }

    fn shutdown_signal() -> (
        oneshot::Sender<()>,
        impl Future<Output = ()> + Send + 'static,
    ) {
        let (stop, stopped) = oneshot::channel::<()>();
        (stop, async move {
            let _ = stopped.await;
        })
    }

    #[tokio::test]
    async fn metrics_shows_a_counter_after_it_was_incremented() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let (stop, shutdown) = shutdown_signal();
        let server = serve_metrics(any_port(), metrics.clone(), shutdown)
            .await
            .expect("binds");
        metrics.node_created("default");

        let reply = http_get(server.address, "/metrics").await;

        assert_eq!(reply.status, 200);
        assert!(
            reply
                .headers
                .contains("content-type: text/plain; version=0.0.4"),
            "Prometheus text format, got headers:\n{}",
            reply.headers
        );
        assert!(
            reply
                .body
                .lines()
                .any(|line| line
                    == "karpenter_nodes_created{nodepool=\"\",provisioner=\"default\"} 1"),
            "the counter is exported:\n{}",
            reply.body
        );
        let _ = stop.send(());
        timeout(PATIENCE, server.stopped())
            .await
            .expect("stops in time")
            .expect("stops cleanly");
    }

    #[tokio::test]
    async fn healthz_answers_ok_while_running() {
        let (_stop, shutdown) = shutdown_signal();
        let server = serve_health(any_port(), Readiness::new(), shutdown)
            .await
            .expect("binds");

        let reply = http_get(server.address, "/healthz").await;

        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "ok");
    }

    #[tokio::test]
    async fn readyz_waits_for_synced_caches() {
        let readiness = Readiness::new();
        let (_stop, shutdown) = shutdown_signal();
        let server = serve_health(any_port(), readiness.clone(), shutdown)
            .await
            .expect("binds");

        let before = http_get(server.address, "/readyz").await;
        readiness.set_caches_synced(true);
        let after = http_get(server.address, "/readyz").await;

        assert_eq!(before.status, 503);
        assert!(before.body.contains("caches not synced"), "{}", before.body);
        assert_eq!(after.status, 200);
    }

    #[tokio::test]
    async fn a_leader_is_ready_only_once_its_loops_run() {
        let readiness = Readiness::new();
        let (_stop, shutdown) = shutdown_signal();
        let server = serve_health(any_port(), readiness.clone(), shutdown)
            .await
            .expect("binds");
        readiness.set_caches_synced(true);
        readiness.set_leading(true);

        let starting = http_get(server.address, "/readyz").await;
        readiness.set_loops_running(true);
        let running = http_get(server.address, "/readyz").await;

        assert_eq!(starting.status, 503);
        assert!(starting.body.contains("control loops"), "{}", starting.body);
        assert_eq!(running.status, 200);
    }

    #[tokio::test]
    async fn unknown_paths_are_not_found() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let (_stop_metrics, metrics_shutdown) = shutdown_signal();
        let (_stop_health, health_shutdown) = shutdown_signal();
        let metrics_server = serve_metrics(any_port(), metrics, metrics_shutdown)
            .await
            .expect("binds");
        let health_server = serve_health(any_port(), Readiness::new(), health_shutdown)
            .await
            .expect("binds");

        assert_eq!(
            http_get(metrics_server.address, "/healthz").await.status,
            404
        );
        assert_eq!(
            http_get(health_server.address, "/metrics").await.status,
            404
        );
        assert_eq!(http_get(health_server.address, "/nope").await.status, 404);
    }

    #[tokio::test]
    async fn a_port_in_use_is_an_error_at_start() {
        let (_stop, shutdown) = shutdown_signal();
        let first = serve_health(any_port(), Readiness::new(), shutdown)
            .await
            .expect("binds");
        let (_stop_again, shutdown_again) = shutdown_signal();

        let second = serve_health(first.address, Readiness::new(), shutdown_again).await;

        assert!(second.is_err(), "a second server cannot take the same port");
    }
}
