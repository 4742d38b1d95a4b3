//! A TCP proxy between the controllers and the simulated API server that misbehaves as a real
//! control plane under stress does: it refuses connections, answers requests with 500 or 429,
//! and cuts connections after a random lifetime (ending watches and dropping requests in flight).
//! How often is the "weather", changed by the chaos loop while the trial runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::rng::Rng;

/// Chances per new connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Weather {
    /// Closed at once, before any byte.
    pub refuse: f64,
    /// Its first request answered with 500 or 429 and closed.
    pub error: f64,
    /// Per second of an open connection: closed whatever is in flight.
    pub cut: f64,
}

#[derive(Debug, Default)]
pub struct ProxyCounts {
    pub refused: AtomicU64,
    pub errored: AtomicU64,
    pub cut: AtomicU64,
}

struct Shared {
    weather: Mutex<Weather>,
    rng: Mutex<Rng>,
    counts: ProxyCounts,
}

pub struct ApiProxy {
    pub address: SocketAddr,
    shared: Arc<Shared>,
}

impl ApiProxy {
    pub async fn start(upstream: SocketAddr, rng: Rng) -> std::io::Result<ApiProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            weather: Mutex::new(Weather::default()),
            rng: Mutex::new(rng),
            counts: ProxyCounts::default(),
        });
        let state = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, upstream, state.clone()));
            }
        });
        Ok(ApiProxy { address, shared })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn set_weather(&self, weather: Weather) {
        *self.shared.weather.lock().expect("proxy weather") = weather;
    }

    pub fn counts(&self) -> &ProxyCounts {
        &self.shared.counts
    }
}

enum Fate {
    Refuse,
    Error(u16),
    Forward,
}

fn fate(shared: &Shared) -> Fate {
    let weather = *shared.weather.lock().expect("proxy weather");
    let mut rng = shared.rng.lock().expect("proxy rng");
    if rng.chance(weather.refuse) {
        Fate::Refuse
    } else if rng.chance(weather.error) {
        Fate::Error(if rng.chance(0.5) { 500 } else { 429 })
    } else {
        Fate::Forward
    }
}

/// Whether to cut a connection now: clients keep connections (and watches) open for long, so
/// each one rolls the weather's `cut` chance every second.
fn cut_now(shared: &Shared) -> bool {
    let weather = *shared.weather.lock().expect("proxy weather");
    weather.cut > 0.0 && shared.rng.lock().expect("proxy rng").chance(weather.cut)
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    match fate(&shared) {
        Fate::Refuse => {
            shared.counts.refused.fetch_add(1, Ordering::Relaxed);
        }
        Fate::Error(code) => {
            shared.counts.errored.fetch_add(1, Ordering::Relaxed);
            let _ = answer_error(&mut client, code).await;
        }
        Fate::Forward => {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            let mut relay = std::pin::pin!(tokio::io::copy_bidirectional(&mut client, &mut server));
            loop {
                tokio::select! {
                    _ = &mut relay => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                        if cut_now(&shared) {
                            shared.counts.cut.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Reads the first request's head and answers it as kube-apiserver answers an overloaded or
/// failing request: a `Status` object, then the connection closes.
async fn answer_error(client: &mut TcpStream, code: u16) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let (reason, text) = match code {
        429 => ("TooManyRequests", "Too Many Requests"),
        _ => ("InternalError", "Internal Server Error"),
    };
    let body = format!(
        r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"injected by the chaos proxy","reason":"{reason}","code":{code}}}"#
    );
    let retry_after = if code == 429 {
        "Retry-After: 1\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {code} {text}\r\nContent-Type: application/json\r\n{retry_after}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}
