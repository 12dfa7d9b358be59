//! A local market-data API to test against (`quiver serve-synthetic`): an
//! HTTP server on 127.0.0.1 serving the synthetic market data of
//! `fetch.synthetic` (bars, trades, stock data) and three enrichment
//! sources (free float, VWAP, relative volume), as a real vendor API
//! behaves: with latency, a rate limit answered with 429 and `Retry-After`,
//! and server errors at a chosen rate. It counts what it served, per route
//! and per second, so that tests can check what clients did.
//!
//! Routes (JSON; `{"data": [rows…]}` for tables):
//! - `GET /v1/bars/SYMBOL?start=DATE&end=DATE` — daily bars
//! - `GET /v1/trades/SYMBOL?start=DATE&end=DATE` — intraday trades
//! - `GET /v1/info/SYMBOL` — shares outstanding, free float, sector
//! - `GET /v1/float/SYMBOL`, `/v1/vwap/SYMBOL?date=DATE`,
//!   `/v1/rvol/SYMBOL?date=DATE` — one enrichment record each
//! - `GET /stats` — the counts (never delayed, limited or failed)

mod http;
mod routes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use routes::Route;

/// How the API behaves.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Requests answered per wall-clock second, over all routes; beyond
    /// it, 429 with `Retry-After`. None: no limit.
    pub rate_per_second: Option<u32>,
    /// The wait before each answer, per route; routes not named wait
    /// `latency`.
    pub latency: Duration,
    pub route_latency: BTreeMap<Route, Duration>,
    /// The share of requests answered 503, drawn per request from a
    /// counter, so a run is reproducible.
    pub fail_rate: f64,
    /// Routes that always answer 503 (a source that is down).
    pub down: Vec<Route>,
}

/// What the API has answered so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Requests answered 200, per route name.
    pub served: BTreeMap<String, u64>,
    /// Requests answered 429.
    pub limited: u64,
    /// Requests answered 5xx.
    pub failed: u64,
    /// Requests answered 404 or 400.
    pub bad: u64,
    /// Requests answered 200, per wall-clock second (Unix seconds) in
    /// which they were admitted: the second the rate limit counted them
    /// in, whatever the latency before the answer.
    pub per_second: BTreeMap<u64, u64>,
}

impl Stats {
    /// The most requests answered 200 in one second.
    pub fn busiest_second(&self) -> u64 {
        self.per_second.values().copied().max().unwrap_or(0)
    }

    pub fn served_total(&self) -> u64 {
        self.served.values().sum()
    }
}

struct Shared {
    config: ApiConfig,
    stats: Mutex<Stats>,
    /// Requests so far: the draw for injected failures.
    requests: AtomicU64,
    /// The current second and how many requests it has admitted.
    window: Mutex<(u64, u32)>,
}

/// A running API. Dropping it stops the server.
pub struct SyntheticApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl SyntheticApi {
    /// Starts serving on `addr` (`127.0.0.1:0` picks a free port).
    pub async fn start(addr: &str, config: ApiConfig) -> std::io::Result<SyntheticApi> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            stats: Mutex::new(Stats::default()),
            requests: AtomicU64::new(0),
            window: Mutex::new((0, 0)),
        });
        let state = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = http::serve_connection(stream, |req| answer(&state, req)).await;
                });
            }
        });
        Ok(SyntheticApi { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for SyntheticApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn unix_now() -> (u64, Duration) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_secs(), now)
}

/// Whether this second still has room: the second admitted in; if not,
/// how long until the next.
fn admit(shared: &Shared) -> Result<u64, u64> {
    let (second, _) = unix_now();
    let Some(limit) = shared.config.rate_per_second else {
        return Ok(second);
    };
    let mut window = shared.window.lock().unwrap_or_else(|e| e.into_inner());
    if window.0 != second {
        *window = (second, 0);
    }
    if window.1 < limit {
        window.1 += 1;
        Ok(second)
    } else {
        Err(1)
    }
}

/// One request's answer: status, extra headers, body.
async fn answer(shared: &Shared, req: http::Request) -> http::Response {
    let Some((route, symbol)) = Route::parse(&req.path) else {
        count(shared, |s| s.bad += 1);
        return http::Response::json(
            404,
            &serde_json::json!({"error": format!("no route {}", req.path)}),
        );
    };
    if route == Route::Stats {
        let stats = shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        return http::Response::json(200, &stats);
    }
    let admitted = match admit(shared) {
        Ok(second) => second,
        Err(retry_after) => {
            count(shared, |s| s.limited += 1);
            let mut response =
                http::Response::json(429, &serde_json::json!({"error": "rate limit exceeded"}));
            response
                .headers
                .push(("Retry-After".into(), retry_after.to_string()));
            return response;
        }
    };
    let latency = shared
        .config
        .route_latency
        .get(&route)
        .copied()
        .unwrap_or(shared.config.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let n = shared.requests.fetch_add(1, Ordering::Relaxed);
    if shared.config.down.contains(&route) || draw(n) < shared.config.fail_rate {
        count(shared, |s| s.failed += 1);
        return http::Response::json(503, &serde_json::json!({"error": "service unavailable"}));
    }
    match routes::body(route, &symbol, &req.query).await {
        Ok(body) => {
            count(shared, |s| {
                *s.served.entry(route.name().to_string()).or_default() += 1;
                *s.per_second.entry(admitted).or_default() += 1;
            });
            http::Response::json(200, &body)
        }
        Err(message) => {
            count(shared, |s| s.bad += 1);
            http::Response::json(400, &serde_json::json!({"error": message}))
        }
    }
}

fn count(shared: &Shared, f: impl FnOnce(&mut Stats)) {
    f(&mut shared.stats.lock().unwrap_or_else(|e| e.into_inner()));
}

/// A number in [0, 1) from a request count: splitmix64.
fn draw(n: u64) -> f64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}
