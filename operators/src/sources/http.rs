//! `fetch.http`: one HTTP GET whose JSON or CSV body becomes a table.
//!
//! The operator makes exactly one attempt. Rate limits, concurrency, retries
//! and timeouts across attempts belong to the executor, which reads the
//! error kinds returned here: [`OpError::Throttled`] (HTTP 429, with the
//! server's `Retry-After`), transient [`OpError::Source`] (5xx, 408,
//! timeouts, refused or dropped connections) and permanent ones (other 4xx,
//! bodies that do not parse).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Cursor;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use datafusion::arrow::csv::ReaderBuilder as CsvReaderBuilder;
use datafusion::arrow::csv::reader::Format as CsvFormat;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::ReaderBuilder as JsonReaderBuilder;
use datafusion::arrow::json::reader::infer_json_schema_from_iterator;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use schemars::JsonSchema;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::operator::OpParams;
use crate::{
    Arity, ExecContext, Freshness, Inputs, OpError, Operator, ParamError, Table, Workload,
};

const NAME: &str = "fetch.http";

/// Rows per output batch.
const BATCH_ROWS: usize = 8192;

/// How much of an error response's body goes into the error message.
const SNIPPET_CHARS: usize = 200;

/// Parameters of `fetch.http`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpParams {
    /// The URL to GET, `http://` or `https://`. `${…}` placeholders are
    /// filled in by the engine before the request. Error messages show it
    /// without its query string, which may hold keys.
    ///
    /// ```yaml
    /// url: https://api.example.com/v1/bars/${symbol}
    /// ```
    pub url: String,

    /// Query parameters added to the URL, percent-encoded.
    ///
    /// ```yaml
    /// query: { interval: 1d, limit: 500 }
    /// ```
    #[serde(default)]
    pub query: BTreeMap<String, Scalar>,

    /// Request headers. Their values are never logged.
    ///
    /// ```yaml
    /// headers: { Authorization: "Bearer ${env:API_TOKEN}" }
    /// ```
    #[serde(default)]
    pub headers: BTreeMap<String, String>,

    /// How the body is read: `json` (the default) or `csv` (with a header
    /// line, comma-separated).
    ///
    /// ```yaml
    /// format: csv
    /// ```
    #[serde(default)]
    pub format: BodyFormat,

    /// For JSON: where the records are inside the document, as keys joined
    /// with dots (a number indexes an array). The value there is an array
    /// of objects, one row each, or a single object, one row. Defaults to
    /// the document itself.
    ///
    /// ```yaml
    /// records_path: data.bars
    /// ```
    #[serde(default)]
    pub records_path: Option<String>,

    /// The columns to read and their types, in order: `int` (Int64),
    /// `float` (Float64), `string`, `bool`, `date` (text like 2026-01-05),
    /// `timestamp` (ISO 8601 text; with an offset it is converted to UTC,
    /// stored without a zone), `epoch_s` or `epoch_ms` (numbers of seconds
    /// or milliseconds since 1970, UTC). JSON records may lack a key (null)
    /// or have others (ignored); a CSV body must have every column. Omit to
    /// infer the columns from the body: JSON numbers become Int64 or
    /// Float64, text stays text.
    ///
    /// ```yaml
    /// schema: { t: epoch_s, o: float, c: float, v: int }
    /// ```
    #[serde(default, deserialize_with = "ordered_columns")]
    #[schemars(with = "Option<BTreeMap<String, ColumnType>>")]
    pub schema: Option<Vec<(String, ColumnType)>>,

    /// How long the request may take, body included: a number and a unit
    /// (`ms`, `s`, `m`, `h`). Defaults to `30s`. Running out is a transient
    /// failure, so the node's retry policy applies.
    ///
    /// ```yaml
    /// timeout: 10s
    /// ```
    #[serde(default)]
    pub timeout: Option<String>,

    /// The last day the response covers, when it is for a range of dates
    /// (usually `${end_date}`, or `${date}` for one day). A live API's
    /// response is reused for five minutes; once this day has ended in
    /// `timezone`, what the API answers for it can no longer change, so a
    /// response stored after then is kept for good. A node's `cache:`
    /// setting overrides both.
    ///
    /// ```yaml
    /// last_day: "${end_date}"
    /// ```
    #[serde(default)]
    pub last_day: Option<String>,

    /// The time zone in which `last_day` ends, as in the IANA database
    /// (`Asia/Ho_Chi_Minh`, `America/New_York`). Defaults to `UTC`.
    ///
    /// ```yaml
    /// timezone: Asia/Ho_Chi_Minh
    /// ```
    #[serde(default)]
    pub timezone: Option<String>,
}

/// How long a live API's responses are reused, unless the node says.
const LIVE_TTL: Duration = Duration::from_secs(5 * 60);

/// A query parameter's value: text, a number or a boolean.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Text(s) => f.write_str(s),
        }
    }
}

/// How the response body is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// A JSON document; see `records_path`.
    #[default]
    Json,
    /// CSV with a header line.
    Csv,
}

/// A declared column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Int,
    Float,
    String,
    Bool,
    Date,
    Timestamp,
    EpochS,
    EpochMs,
}

impl ColumnType {
    fn data_type(self) -> DataType {
        match self {
            ColumnType::Int => DataType::Int64,
            ColumnType::Float => DataType::Float64,
            ColumnType::String => DataType::Utf8,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Nanosecond, None),
            ColumnType::EpochS => DataType::Timestamp(TimeUnit::Second, None),
            ColumnType::EpochMs => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }
}

/// `schema:` as written, keeping the order of its keys (a map would sort them).
fn ordered_columns<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<(String, ColumnType)>>, D::Error> {
    struct Columns;
    impl<'de> Visitor<'de> for Columns {
        type Value = Option<Vec<(String, ColumnType)>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map from column name to type, e.g. {ts: timestamp, close: float}")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut columns = Vec::new();
            while let Some((name, ty)) = map.next_entry::<String, ColumnType>()? {
                columns.push((name, ty));
            }
            Ok(Some(columns))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Columns)
}

impl OpParams for HttpParams {
    const NAME: &'static str = NAME;
    const DOC: &'static str = "GETs a URL (with `query` parameters and `headers`) and reads the \
        body as a table: JSON records (the document, or the array at `records_path`) or CSV, \
        with a declared `schema` or one inferred from the body. One attempt per run: HTTP 429 \
        is reported as throttling with the server's Retry-After, 5xx, timeouts and connection \
        failures as transient (retried by the node's policy), other 4xx as permanent. HTTP/1.1 \
        over plain TCP or TLS (rustls, the system's root certificates). Takes no inputs.";
    const WORKLOAD: Workload = Workload::Io;
    const INPUTS: Arity = Arity::None;

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        let mut url = Url::parse(self.url.trim()).map_err(|e| {
            ParamError::new(
                &["url"],
                format!(
                    "'{}' is not a URL ({e}); write e.g. `https://api.example.com/v1/bars`",
                    self.url
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ParamError::new(
                &["url"],
                format!(
                    "'{}' is not an http:// or https:// URL with a host",
                    self.url
                ),
            ));
        }
        if !self.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in &self.query {
                pairs.append_pair(key, &value.to_string());
            }
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ParamError::new(&["headers", name], format!("'{name}' is not a header name"))
            })?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                ParamError::new(
                    &["headers", name],
                    "the value holds characters a header cannot carry (line breaks, control \
                     characters)",
                )
            })?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        if self.records_path.is_some() && self.format == BodyFormat::Csv {
            return Err(ParamError::new(
                &["records_path"],
                "records_path points into a JSON document; a CSV body is a table already, so \
                 remove it or set `format: json`",
            ));
        }
        if let Some(columns) = &self.schema {
            if columns.is_empty() {
                return Err(ParamError::new(
                    &["schema"],
                    "schema declares no columns; omit it to infer them from the body",
                ));
            }
            if let Some(i) =
                (1..columns.len()).find(|&i| columns[..i].iter().any(|c| c.0 == columns[i].0))
            {
                return Err(ParamError::new(
                    &["schema", &columns[i].0],
                    format!("column '{}' is declared twice", columns[i].0),
                ));
            }
        }
        let timeout = match &self.timeout {
            None => Duration::from_secs(30),
            Some(text) => parse_duration(text).map_err(|m| ParamError::new(&["timeout"], m))?,
        };
        let closes = match &self.last_day {
            None if self.timezone.is_some() => {
                return Err(ParamError::new(
                    &["timezone"],
                    "timezone says where `last_day` ends; set `last_day` too, or remove it",
                ));
            }
            None => None,
            Some(text) => {
                let day = crate::shared::calendar::parse_date(text.trim()).ok_or_else(|| {
                    ParamError::new(
                        &["last_day"],
                        format!("'{text}' is not a date; write it as 2026-01-05"),
                    )
                })?;
                Some(day_end(day, self.timezone.as_deref())?)
            }
        };
        let schema = self.schema.map(|columns| {
            Arc::new(Schema::new(
                columns
                    .into_iter()
                    .map(|(name, ty)| Field::new(name, ty.data_type(), true))
                    .collect::<Vec<_>>(),
            ))
        });
        Ok(Arc::new(HttpFetch {
            shown_url: redacted(&url),
            url,
            headers,
            format: self.format,
            records_path: self.records_path,
            schema,
            timeout,
            closes,
        }))
    }
}

/// The instant `day` (days since 1970) ends, the next midnight, in
/// `timezone` (default UTC).
fn day_end(day: i32, timezone: Option<&str>) -> Result<SystemTime, ParamError> {
    use datafusion::arrow::array::timezone::Tz;
    let zone: Tz = timezone.unwrap_or("UTC").trim().parse().map_err(|_| {
        ParamError::new(
            &["timezone"],
            format!(
                "'{}' is not a time zone of the IANA database; write e.g. \
                 `Asia/Ho_Chi_Minh` or `America/New_York`",
                timezone.unwrap_or_default()
            ),
        )
    })?;
    const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;
    let midnight =
        crate::shared::sessions::wall_to_utc(&zone, (i64::from(day) + 1) * NANOS_PER_DAY)
            .ok_or_else(|| {
                ParamError::new(&["last_day"], "the day has no end in that time zone")
            })?;
    let ms = u64::try_from(midnight / 1_000_000).unwrap_or(0);
    Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

/// A duration written as `500ms`, `30s`, `5m` or `1h`, as the engine writes
/// node timeouts.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let help = "write e.g. `500ms`, `30s` or `2m`";
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("'{text}' has no unit; {help}"))?;
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration; {help}"))?;
    let seconds = match unit.trim() {
        "ms" => n / 1e3,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit '{other}' in '{text}'; {help}")),
    };
    if seconds <= 0.0 {
        return Err(format!("timeout '{text}' must be longer than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The URL without its query, fragment or credentials, fit for messages.
fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// The runtime `fetch.http` operator.
struct HttpFetch {
    url: Url,
    shown_url: String,
    headers: HeaderMap,
    format: BodyFormat,
    records_path: Option<String>,
    schema: Option<SchemaRef>,
    timeout: Duration,
    /// When the last day the response covers ends (`last_day`).
    closes: Option<SystemTime>,
}

impl fmt::Debug for HttpFetch {
    // By hand, so that header values (tokens) and the query (keys) stay out
    // of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFetch")
            .field("url", &self.shown_url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("format", &self.format)
            .field("records_path", &self.records_path)
            .field("schema", &self.schema)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One client for the process, so connections are pooled across nodes.
fn client() -> Result<&'static reqwest::Client, OpError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // reqwest is built without a TLS provider of its own; ring needs
            // only a C compiler. An error means one is installed already.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .user_agent(concat!("quiver/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| OpError::Internal(format!("fetch.http cannot build its HTTP client: {e}")))
}

#[async_trait]
impl Operator for HttpFetch {
    /// A live API can answer differently a minute later: its responses
    /// are reused for five minutes unless the node says otherwise; a
    /// response for days that have all ended, stored after they did, for
    /// good.
    fn freshness(&self) -> Freshness {
        match self.closes {
            Some(at) => Freshness::Until {
                ttl: LIVE_TTL,
                final_from: at,
            },
            None => Freshness::For(LIVE_TTL),
        }
    }

    async fn execute(&self, ctx: &ExecContext, _inputs: Inputs) -> Result<Table, OpError> {
        let response = client()?
            .get(self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.request_error(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = response.bytes().await.map_err(|e| self.request_error(&e))?;
        if !status.is_success() {
            return Err(self.status_error(status, retry_after, &body));
        }

        let op = Parse {
            shown_url: self.shown_url.clone(),
            format: self.format,
            records_path: self.records_path.clone(),
            schema: self.schema.clone(),
        };
        // Parsing a large body is CPU work: off the async threads, inside
        // the run's thread budget.
        let table = ctx.run_cpu(1, move |_, _| op.table(&body)).await?;
        tracing::debug!(
            url = %self.shown_url,
            status = status.as_u16(),
            rows = table.num_rows(),
            "Fetched over HTTP"
        );
        Ok(table)
    }
}

impl HttpFetch {
    /// No response: every such failure (timeout, refused or reset
    /// connection, broken body) may pass on a later attempt.
    fn request_error(&self, e: &reqwest::Error) -> OpError {
        let what = if e.is_timeout() {
            format!("timed out after {:?}", self.timeout)
        } else if e.is_connect() {
            "cannot connect".to_string()
        } else {
            "failed".to_string()
        };
        // The error's own text names the full URL; show its cause instead.
        let mut cause = String::new();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        OpError::Source {
            message: format!(
                "fetch.http: GET {} {what}{}",
                self.shown_url,
                if cause.is_empty() {
                    String::new()
                } else {
                    format!(": {cause}")
                }
            ),
            transient: true,
        }
    }

    fn status_error(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> OpError {
        let message = format!(
            "fetch.http: GET {} answered HTTP {status}: {}",
            self.shown_url,
            snippet(body)
        );
        if status == StatusCode::TOO_MANY_REQUESTS {
            return OpError::Throttled {
                message,
                retry_after,
            };
        }
        OpError::Source {
            message,
            transient: status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// `Retry-After`: a number of seconds, or an HTTP date (then the time from
/// `now` until it, zero if past).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let now = chrono::DateTime::<chrono::Utc>::from(now);
    Some(
        when.with_timezone(&chrono::Utc)
            .signed_duration_since(now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The start of a body, on one line, for an error message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(SNIPPET_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// What turns a body into a table.
struct Parse {
    shown_url: String,
    format: BodyFormat,
    records_path: Option<String>,
    schema: Option<SchemaRef>,
}

impl Parse {
    fn table(&self, body: &[u8]) -> Result<Table, OpError> {
        match self.format {
            BodyFormat::Json => self.json(body),
            BodyFormat::Csv => self.csv(body),
        }
    }

    fn json(&self, body: &[u8]) -> Result<Table, OpError> {
        let document: Value = serde_json::from_slice(body)
            .map_err(|e| self.bad_body(format!("the body is not JSON ({e}): {}", snippet(body))))?;
        let records = self.records(&document)?;
        let schema = match &self.schema {
            Some(schema) => schema.clone(),
            None => Arc::new(
                infer_json_schema_from_iterator(records.iter().map(|r| Ok::<_, ArrowError>(*r)))
                    .map_err(|e| self.bad_body(format!("cannot infer columns: {e}")))?,
            ),
        };
        let mut decoder = JsonReaderBuilder::new(schema.clone())
            .with_batch_size(BATCH_ROWS)
            .build_decoder()?;
        let mut batches = Vec::new();
        for chunk in records.chunks(BATCH_ROWS) {
            decoder
                .serialize(chunk)
                .map_err(|e| self.bad_body(format!("records do not fit the columns: {e}")))?;
            if let Some(batch) = decoder.flush()? {
                batches.push(batch);
            }
        }
        Ok(Table::new(schema, batches))
    }

    /// The records at `records_path`: an array's elements, or one object.
    fn records<'a>(&self, document: &'a Value) -> Result<Vec<&'a Value>, OpError> {
        let mut here = document;
        let mut walked = Vec::new();
        for key in self.records_path.iter().flat_map(|p| p.split('.')) {
            let at = if walked.is_empty() {
                "the document".to_string()
            } else {
                format!("'{}'", walked.join("."))
            };
            here = match here {
                Value::Object(map) => map.get(key).ok_or_else(|| {
                    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                    self.bad_body(format!(
                        "records_path: {at} has no key '{key}'; its keys are: {}",
                        keys.join(", ")
                    ))
                })?,
                Value::Array(items) => key
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .ok_or_else(|| {
                        self.bad_body(format!(
                            "records_path: {at} is an array of {} items, which '{key}' does not index",
                            items.len()
                        ))
                    })?,
                other => {
                    return Err(self.bad_body(format!(
                        "records_path: {at} is {}, which has no '{key}'",
                        kind(other)
                    )));
                }
            };
            walked.push(key);
        }
        let records: Vec<&Value> = match here {
            Value::Array(items) => items.iter().collect(),
            object @ Value::Object(_) => vec![object],
            other => {
                return Err(self.bad_body(format!(
                    "expected an array of records{}, found {}",
                    self.records_path
                        .as_ref()
                        .map(|p| format!(" at '{p}'"))
                        .unwrap_or_default(),
                    kind(other)
                )));
            }
        };
        if let Some((i, other)) = records.iter().enumerate().find(|(_, r)| !r.is_object()) {
            return Err(self.bad_body(format!(
                "record {i} is {}, not an object with one key per column",
                kind(other)
            )));
        }
        Ok(records)
    }

    fn csv(&self, body: &[u8]) -> Result<Table, OpError> {
        let format = CsvFormat::default().with_header(true);
        let (inferred, _) = format
            .infer_schema(Cursor::new(body), None)
            .map_err(|e| self.bad_body(format!("the body is not CSV: {e}")))?;
        // Declared columns take their declared types and order; the others
        // are parsed as inferred and then dropped.
        let (schema, projection) = match &self.schema {
            None => (Arc::new(inferred), None),
            Some(declared) => {
                let mut fields: Vec<Field> = inferred
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                let mut projection = Vec::new();
                for field in declared.fields() {
                    let i = inferred.index_of(field.name()).map_err(|_| {
                        let names: Vec<&str> = inferred
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect();
                        self.bad_body(format!(
                            "the CSV has no column '{}'; its columns are: {}",
                            field.name(),
                            names.join(", ")
                        ))
                    })?;
                    fields[i] = field.as_ref().clone();
                    projection.push(i);
                }
                (Arc::new(Schema::new(fields)), Some(projection))
            }
        };
        let mut builder = CsvReaderBuilder::new(schema)
            .with_format(format)
            .with_batch_size(BATCH_ROWS);
        if let Some(projection) = projection {
            builder = builder.with_projection(projection);
        }
        let reader = builder.build(Cursor::new(body))?;
        let out_schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.bad_body(format!("cannot read the CSV: {e}")))?;
        Ok(Table::new(out_schema, batches))
    }

    /// A body that does not read: asking again would get the same.
    fn bad_body(&self, what: String) -> OpError {
        OpError::Source {
            message: format!("fetch.http: GET {}: {what}", self.shown_url),
            transient: false,
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// The tests, with the HTTP server they run against, live in
// `fetch_http/tests.rs` to keep this file readable.
#[cfg(test)]
mod tests;
