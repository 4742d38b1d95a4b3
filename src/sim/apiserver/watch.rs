//! Watch streams: newline-delimited JSON events over a chunked response, as the real server sends
//! them. A watch that falls behind the broadcast (a slow reader) gets an ERROR event with a 410
//! Status and is closed, so its client relists instead of blocking writers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use super::meta;
use super::resources::ResourceType;
use super::status::ApiError;
use super::store::{Change, EventType, Filter, Store, WatchFrom, too_old};

/// What the query string asked of a watch.
#[derive(Debug, Clone)]
pub struct WatchParams {
    pub from: WatchFrom,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    /// `sendInitialEvents=true`: a BOOKMARK annotated `k8s.io/initial-events-end` follows the
    /// initial ADDED events (the streaming-list protocol).
    pub send_initial_events: bool,
}

/// Events a watch may buffer for a slow HTTP reader before the connection applies back-pressure
/// (the broadcast behind it is what bounds memory).
const LINES_BUFFERED: usize = 64;

/// Starts a watch and returns its streaming body. A version older than the kept history gives
/// a body with one ERROR event (410), as the real server answers such a watch.
pub fn start(
    store: &Arc<Store>,
    rt: &ResourceType,
    filter: Filter,
    params: WatchParams,
    bookmark_interval: Duration,
    shutdown: watch::Receiver<bool>,
    cut: watch::Receiver<u64>,
) -> Body {
    let started = store.watch(rt, &filter, params.from);
    let (lines, receiver) = mpsc::channel::<Bytes>(LINES_BUFFERED);
    let body = Body::from_stream(futures::stream::unfold(
        receiver,
        |mut receiver| async move {
            receiver
                .recv()
                .await
                .map(|line| (Ok::<_, Infallible>(line), receiver))
        },
    ));
    let started = match started {
        Ok(started) => started,
        Err(error) => {
            let line = error_line(&error);
            tokio::spawn(async move {
                let _ = lines.send(line).await;
            });
            return body;
        }
    };
    let watcher = Watcher {
        rt: rt.clone(),
        filter,
        lines,
        last_version: started.resource_version,
    };
    tokio::spawn(watcher.run(
        started.initial,
        started.receiver,
        params,
        bookmark_interval,
        shutdown,
        cut,
    ));
    body
}

struct Watcher {
    rt: ResourceType,
    filter: Filter,
    lines: mpsc::Sender<Bytes>,
    /// The newest version this watcher has seen (of any resource): what bookmarks report.
    last_version: u64,
}

impl Watcher {
    async fn run(
        mut self,
        initial: Vec<(EventType, Value)>,
        mut changes: broadcast::Receiver<Arc<Change>>,
        params: WatchParams,
        bookmark_interval: Duration,
        mut shutdown: watch::Receiver<bool>,
        mut cut: watch::Receiver<u64>,
    ) {
        for (event, object) in initial {
            if !self.send(event.as_str(), object).await {
                return;
            }
        }
        if params.send_initial_events && params.from == WatchFrom::Current {
            let bookmark = self.bookmark(true);
            if !self.send("BOOKMARK", bookmark).await {
                return;
            }
        }
        let deadline = params
            .timeout
            .map(|timeout| tokio::time::Instant::now() + timeout);
        let mut ticker = tokio::time::interval(bookmark_interval.max(Duration::from_millis(10)));
        ticker.tick().await;
        let key = self.rt.key();
        loop {
            tokio::select! {
                _ = self.lines.closed() => return,
                _ = shutdown.changed() => return,
                _ = cut.changed() => return,
                _ = sleep_until(deadline) => return,
                _ = ticker.tick(), if params.bookmarks => {
                    let bookmark = self.bookmark(false);
                    if !self.send("BOOKMARK", bookmark).await {
                        return;
                    }
                }
                received = changes.recv() => match received {
                    Ok(change) => {
                        self.last_version = change.resource_version;
                        let Some(event) = change.event_for(&key, &self.filter) else {
                            continue;
                        };
                        let object = if event == EventType::Deleted && change.event != EventType::Deleted {
                            // Left the filter: the real watch cache reports the old object.
                            let mut old = change.old.clone().unwrap_or_else(|| change.object.clone());
                            meta::set(&mut old, "resourceVersion", json!(change.resource_version.to_string()));
                            old
                        } else {
                            change.object.clone()
                        };
                        if !self.send(event.as_str(), object).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = self.lines.send(error_line(&too_old(self.last_version))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }

    fn bookmark(&self, initial_events_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": self.last_version.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": metadata})
    }

    /// Sends one event line; false once the client has gone.
    async fn send(&self, event: &str, object: Value) -> bool {
        self.lines
            .send(line(&json!({"type": event, "object": object})))
            .await
            .is_ok()
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn line(value: &Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

fn error_line(error: &ApiError) -> Bytes {
    line(&json!({"type": "ERROR", "object": error.to_status()}))
}
