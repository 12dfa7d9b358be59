//! A rate limit kept in Redis (`shared: redis://…` on a resource), so that
//! every quiver process using the resource together stays under its rate.
//!
//! The limit is a GCRA (generic cell rate algorithm) with a burst of one,
//! run as one Lua script, so each decision is atomic and made on Redis's
//! clock, never on the processes' own. Requests are spaced 2% wider than
//! the rate asks: requests admitted in order in Redis reach the server
//! with some milliseconds of network jitter, and the margin keeps any
//! second of arrivals under the rate.
//!
//! The client speaks just enough of Redis's protocol (RESP) for `SELECT`
//! and `EVAL`.

use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::plan::{Rate, SharedRate};

/// Returns 0 when the caller may go, else the microseconds to wait.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
if tat > now then return math.floor(tat - now) end
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', math.floor(interval / 1000) + 1000)
return 0
"#;

/// How much wider than the rate requests are spaced.
const MARGIN: f64 = 1.02;
/// How long one exchange with Redis may take.
const TIMEOUT: Duration = Duration::from_secs(1);
/// After Redis failed, how long the local limit is used before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

pub struct RedisRate {
    shared: SharedRate,
    key: String,
    interval_us: u64,
    connection: Mutex<Option<BufStream<TcpStream>>>,
    /// Until when Redis is not asked, after a failure.
    down_until: StdMutex<Option<Instant>>,
}

impl RedisRate {
    pub fn new(resource: &str, shared: &SharedRate, rate: Rate) -> Self {
        let interval = rate.per.as_secs_f64() * MARGIN / f64::from(rate.count.max(1));
        Self {
            shared: shared.clone(),
            key: format!(
                "quiver:rate:{resource}:{}/{}ms",
                rate.count,
                rate.per.as_millis()
            ),
            interval_us: (interval * 1e6).ceil() as u64,
            connection: Mutex::new(None),
            down_until: StdMutex::new(None),
        }
    }

    /// The URL, for messages.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Waits for a turn under the shared rate. An error means Redis could
    /// not be asked: the caller keeps the rate alone.
    pub async fn until_ready(&self) -> Result<(), String> {
        if let Some(until) = *self.down_until.lock().unwrap_or_else(|e| e.into_inner())
            && Instant::now() < until
        {
            return Err("Redis failed a moment ago".into());
        }
        loop {
            match self.ask().await {
                Ok(0) => return Ok(()),
                Ok(wait_us) => tokio::time::sleep(Duration::from_micros(wait_us)).await,
                Err(e) => {
                    *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Instant::now() + RETRY_AFTER);
                    return Err(e);
                }
            }
        }
    }

    /// One decision from Redis; the connection is dropped on any error.
    async fn ask(&self) -> Result<u64, String> {
        let mut guard = self.connection.lock().await;
        let result = tokio::time::timeout(TIMEOUT, async {
            if guard.is_none() {
                let stream = TcpStream::connect(&self.shared.address)
                    .await
                    .map_err(|e| format!("cannot connect to {}: {e}", self.shared.address))?;
                let mut stream = BufStream::new(stream);
                if self.shared.db != 0 {
                    let db = self.shared.db.to_string();
                    command(&mut stream, &["SELECT", &db]).await?;
                }
                *guard = Some(stream);
            }
            let stream = guard.as_mut().expect("connected above");
            let interval = self.interval_us.to_string();
            command(stream, &["EVAL", GCRA, "1", &self.key, &interval]).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer from {} within {TIMEOUT:?}",
                self.shared.address
            ))
        });
        match result {
            Ok(Some(n)) => Ok(n.max(0) as u64),
            Ok(None) => {
                *guard = None;
                Err("Redis answered the rate script with no number".into())
            }
            Err(e) => {
                *guard = None;
                Err(e)
            }
        }
    }
}

/// The longest bulk reply read.
const MOST_BULK: i64 = 1 << 20;

/// Sends one command and reads its reply: the number of an integer reply,
/// None for a status or a string (`-ERR …` is an error).
async fn command(stream: &mut BufStream<TcpStream>, args: &[&str]) -> Result<Option<i64>, String> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let io = |e: std::io::Error| format!("Redis connection: {e}");
    stream.write_all(&out).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut line = String::new();
    if stream.read_line(&mut line).await.map_err(io)? == 0 {
        return Err("Redis closed the connection".into());
    }
    let line = line.trim_end();
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" => Ok(None),
        "-" => Err(format!("Redis answered: {rest}")),
        ":" => rest
            .parse()
            .map(Some)
            .map_err(|_| format!("Redis sent a bad integer: {rest}")),
        "$" => {
            let len: i64 = rest
                .parse()
                .map_err(|_| format!("Redis sent a bad length: {rest}"))?;
            if len < 0 {
                return Ok(None);
            }
            if len > MOST_BULK {
                return Err(format!(
                    "Redis sent a {len}-byte string; this client reads none so long"
                ));
            }
            let mut body = vec![0; len as usize + 2];
            stream.read_exact(&mut body).await.map_err(io)?;
            Ok(None)
        }
        _ => Err(format!("Redis sent what this client does not read: {line}")),
    }
}
