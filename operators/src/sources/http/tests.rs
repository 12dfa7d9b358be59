//! `fetch.http` against a real HTTP server on 127.0.0.1, written here by
//! hand (a few lines of tokio) rather than pulled in as a dependency.

use std::net::SocketAddr;
use std::sync::Mutex;

use datafusion::arrow::util::pretty::pretty_format_batches;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::*;
use crate::registry;

/// A canned response.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Waited before answering, to make the client time out.
    delay: Duration,
}

fn ok(body: impl Into<String>) -> Reply {
    Reply {
        status: 200,
        headers: Vec::new(),
        body: body.into(),
        delay: Duration::ZERO,
    }
}

fn status(status: u16, body: &str) -> Reply {
    Reply { status, ..ok(body) }
}

/// Serves `reply` to every request until dropped, recording the request
/// heads it receives.
struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // connection task with it.
        self.task.abort();
    }
}

impl Server {
    async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let reply = reply.clone();
                let seen = seen.clone();
                connections.spawn(async move {
                    // A GET has no body: the request ends with its head.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).into_owned());
                    tokio::time::sleep(reply.delay).await;
                    let mut response = format!(
                        "HTTP/1.1 {} {}\r\ncontent-length: {}\r\nconnection: close\r\n",
                        reply.status,
                        StatusCode::from_u16(reply.status)
                            .unwrap()
                            .canonical_reason()
                            .unwrap_or(""),
                        reply.body.len()
                    );
                    for (name, value) in &reply.headers {
                        response.push_str(&format!("{name}: {value}\r\n"));
                    }
                    response.push_str("\r\n");
                    response.push_str(&reply.body);
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Server {
            addr,
            requests,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn build(params: serde_json::Value) -> Result<Arc<dyn Operator>, ParamError> {
    registry().get(NAME).unwrap().build(params)
}

async fn fetch(params: serde_json::Value) -> Result<Table, OpError> {
    build(params)
        .unwrap()
        .execute(&crate::ExecContext::standalone(), Inputs::default())
        .await
}

fn text(table: &Table) -> String {
    pretty_format_batches(table.batches()).unwrap().to_string()
}

fn types(table: &Table) -> Vec<DataType> {
    table
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect()
}

#[tokio::test]
async fn a_json_array_with_inferred_columns_and_the_query_and_headers_sent() {
    let server = Server::start(ok(r#"[
        {"symbol": "FPT", "close": 95.5, "volume": 100, "halted": false},
        {"symbol": "VNM", "close": 60, "volume": 200, "halted": true}
    ]"#))
    .await;

    let table = fetch(json!({
        "url": server.url("/v1/quotes"),
        "query": { "symbols": "FPT,VNM", "limit": 2 },
        "headers": { "X-Api-Key": "secret" },
    }))
    .await
    .unwrap();

    assert_eq!(
        text(&table),
        "\
+--------+-------+--------+--------+
| symbol | close | volume | halted |
+--------+-------+--------+--------+
| FPT    | 95.5  | 100    | false  |
| VNM    | 60.0  | 200    | true   |
+--------+-------+--------+--------+"
    );
    assert_eq!(
        types(&table),
        [
            DataType::Utf8,
            DataType::Float64,
            DataType::Int64,
            DataType::Boolean
        ]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].starts_with("GET /v1/quotes?limit=2&symbols=FPT%2CVNM HTTP/1.1\r\n"),
        "{}",
        requests[0]
    );
    assert!(
        requests[0].contains("x-api-key: secret\r\n"),
        "{}",
        requests[0]
    );
}

#[tokio::test]
async fn records_deep_in_the_document_with_a_declared_schema() {
    let server = Server::start(ok(r#"{
        "status": "ok",
        "data": {"series": [{"bars": [
            {"t": 1767604500, "d": "2026-01-05", "at": "2026-01-05T09:15:00+07:00", "c": 95, "v": 100, "extra": 1},
            {"t": 1767604560, "d": "2026-01-05", "at": "2026-01-05T02:16:00Z", "c": 95.5}
        ]}]}
    }"#))
    .await;

    let table = fetch(json!({
        "url": server.url("/bars"),
        "records_path": "data.series.0.bars",
        "schema": { "v": "int", "c": "float", "t": "epoch_s", "d": "date", "at": "timestamp" },
    }))
    .await
    .unwrap();

    // In the declared order; `extra` dropped, the missing `v` null, the
    // offset converted to UTC.
    assert_eq!(
        text(&table),
        "\
+-----+------+---------------------+------------+---------------------+
| v   | c    | t                   | d          | at                  |
+-----+------+---------------------+------------+---------------------+
| 100 | 95.0 | 2026-01-05T09:15:00 | 2026-01-05 | 2026-01-05T02:15:00 |
|     | 95.5 | 2026-01-05T09:16:00 | 2026-01-05 | 2026-01-05T02:16:00 |
+-----+------+---------------------+------------+---------------------+"
    );
    assert_eq!(
        types(&table),
        [
            DataType::Int64,
            DataType::Float64,
            DataType::Timestamp(TimeUnit::Second, None),
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Nanosecond, None),
        ]
    );
}

#[tokio::test]
async fn a_records_path_that_is_not_there_names_the_keys_that_are() {
    let server = Server::start(ok(r#"{"data": {"items": []}, "meta": {}}"#)).await;

    let err = fetch(json!({ "url": server.url("/x"), "records_path": "data.itmes" }))
        .await
        .unwrap_err();

    assert!(
        matches!(&err, OpError::Source { transient: false, message }
            if message.contains("'data' has no key 'itmes'; its keys are: items")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_csv_body_inferred_or_declared() {
    let server = Server::start(ok(
        "symbol,date,close,volume\nFPT,2026-01-05,95.5,100\nVNM,2026-01-05,60,200\n",
    ))
    .await;

    let inferred = fetch(json!({ "url": server.url("/eod.csv"), "format": "csv" }))
        .await
        .unwrap();
    assert_eq!(
        types(&inferred),
        [
            DataType::Utf8,
            DataType::Date32,
            DataType::Float64,
            DataType::Int64
        ]
    );
    assert_eq!(inferred.num_rows(), 2);

    let declared = fetch(json!({
        "url": server.url("/eod.csv"),
        "format": "csv",
        "schema": { "close": "float", "volume": "float", "symbol": "string" },
    }))
    .await
    .unwrap();
    assert_eq!(
        text(&declared),
        "\
+-------+--------+--------+
| close | volume | symbol |
+-------+--------+--------+
| 95.5  | 100.0  | FPT    |
| 60.0  | 200.0  | VNM    |
+-------+--------+--------+"
    );
}

#[tokio::test]
async fn http_429_is_throttling_with_the_servers_retry_after() {
    let server = Server::start(Reply {
        headers: vec![("retry-after", "7".into())],
        ..status(429, "slow down")
    })
    .await;
    let err = fetch(json!({ "url": server.url("/q") })).await.unwrap_err();
    assert!(
        matches!(&err, OpError::Throttled { retry_after: Some(d), message }
            if *d == Duration::from_secs(7) && message.contains("429")),
        "{err:?}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    // An HTTP date, 90 seconds from now (to the second).
    let when = chrono::Utc::now() + chrono::Duration::seconds(90);
    let server = Server::start(Reply {
        headers: vec![(
            "retry-after",
            when.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        )],
        ..status(429, "")
    })
    .await;
    let err = fetch(json!({ "url": server.url("/q") })).await.unwrap_err();
    let wait = err.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
        "{wait:?}"
    );
}

#[tokio::test]
async fn server_errors_are_transient_and_client_errors_permanent() {
    let server = Server::start(status(503, "<html>maintenance</html>")).await;
    let err = fetch(json!({ "url": server.url("/q") })).await.unwrap_err();
    assert!(
        matches!(&err, OpError::Source { transient: true, message } if message.contains("503")),
        "{err:?}"
    );
    assert!(err.is_transient());

    let server = Server::start(status(404, "{\"error\": \"unknown symbol XYZ\"}")).await;
    let err = fetch(json!({
        "url": server.url("/v1/quotes/XYZ"),
        "query": { "apikey": "secret" },
    }))
    .await
    .unwrap_err();
    let OpError::Source { transient, message } = &err else {
        panic!("expected OpError::Source, got {err:?}");
    };
    assert!(!transient);
    assert!(message.contains("HTTP 404 Not Found"), "{message}");
    assert!(message.contains("unknown symbol XYZ"), "{message}");
    assert!(message.contains("/v1/quotes/XYZ"), "{message}");
    assert!(
        !message.contains("secret"),
        "the query stays out: {message}"
    );
}

#[tokio::test]
async fn a_slow_server_times_out_transiently() {
    let server = Server::start(Reply {
        delay: Duration::from_secs(10),
        ..ok("[]")
    })
    .await;
    let started = std::time::Instant::now();

    let err = fetch(json!({ "url": server.url("/slow"), "timeout": "200ms" }))
        .await
        .unwrap_err();

    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(&err, OpError::Source { transient: true, message } if message.contains("timed out after 200ms")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    // Bind and release a port, so nothing listens on it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();

    let err = fetch(json!({ "url": format!("http://{addr}/q") }))
        .await
        .unwrap_err();

    assert!(
        matches!(&err, OpError::Source { transient: true, message } if message.contains("cannot connect")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_permanent() {
    let server = Server::start(ok("<html>login</html>")).await;
    let err = fetch(json!({ "url": server.url("/q") })).await.unwrap_err();
    assert!(
        matches!(&err, OpError::Source { transient: false, message } if message.contains("not JSON")),
        "{err:?}"
    );
}

#[test]
fn retry_after_reads_seconds_and_dates() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21T07:28:00Z
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
}

#[test]
fn params_are_checked_at_build_time() {
    for (bad, path) in [
        (json!({ "url": "not a url" }), vec!["url"]),
        (json!({ "url": "ftp://example.com/x" }), vec!["url"]),
        (
            json!({ "url": "http://x/", "headers": { "Bad Name": "v" } }),
            vec!["headers", "Bad Name"],
        ),
        (
            json!({ "url": "http://x/", "headers": { "X-Key": "a\nb" } }),
            vec!["headers", "X-Key"],
        ),
        (
            json!({ "url": "http://x/", "format": "csv", "records_path": "data" }),
            vec!["records_path"],
        ),
        (json!({ "url": "http://x/", "schema": {} }), vec!["schema"]),
        (
            json!({ "url": "http://x/", "timeout": "10" }),
            vec!["timeout"],
        ),
        (
            json!({ "url": "http://x/", "timeout": "0s" }),
            vec!["timeout"],
        ),
    ] {
        let err = build(bad.clone()).unwrap_err();
        assert_eq!(err.path, path, "{bad}: {err}");
    }
    let err = build(json!({ "url": "http://x/", "schema": { "a": "integer" } })).unwrap_err();
    assert!(err.message.contains("unknown variant `integer`"), "{err}");
    let err = build(json!({ "url": "http://x/", "header": {} })).unwrap_err();
    assert!(err.message.contains("unknown field `header`"), "{err}");

    // Header values are kept out of debug output.
    let op = build(json!({
        "url": "http://x/q?token=t0ps3cret",
        "headers": { "Authorization": "Bearer s3cret" },
    }))
    .unwrap();
    let shown = format!("{op:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("t0ps3cret"),
        "{shown}"
    );
}
