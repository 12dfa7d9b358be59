//! The pipeline spec: exactly what the user wrote, deserialized from YAML.
//!
//! Nothing here is resolved: `${…}` references, fan-outs, fragments and
//! references between nodes are left for [`crate::compile`]. Sections whose
//! entries are checked one by one (`params`, `resources`, `nodes`) are kept as
//! raw [`Yaml`] so that one bad entry does not hide the errors in the others.

pub mod de;
mod size;
pub mod yaml;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;

pub use size::parse_size;
pub use yaml::{Pos, Value, Yaml};

/// A pipeline file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The pipeline's name.
    pub pipeline: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Typed parameters, `name: {type, default, required, choices}`.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, ParamDecl>>")]
    pub params: Option<Yaml>,
    /// Named resource pools that nodes share (`resource:` on a node).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, ResourceSpec>>")]
    pub resources: Option<Yaml>,
    /// The nodes, `name: {op | use, with, inputs, foreach, …}`.
    #[schemars(with = "BTreeMap<String, NodeSpec>", extend("minProperties" = 1))]
    pub nodes: Yaml,
    /// Where the pipeline's cached outputs live: `{dir: .quiver/cache}`.
    #[serde(default)]
    pub cache: Option<PipelineCache>,
    /// The trading calendar date partitions use: `hose` (the default),
    /// `nyse`, or `{exchange: hose, holidays: [2027-02-05, …]}`.
    #[serde(default)]
    pub calendar: Option<CalendarSpec>,
    /// `true`: a node that fails fails the run, but every node that does
    /// not need its output still runs (as `make -k`); by default the run
    /// stops starting nodes at the first failure.
    #[serde(default)]
    pub keep_going: Option<bool>,
}

/// `calendar: nyse`, or an exchange's calendar with more holidays.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CalendarSpec {
    Exchange(String),
    Extended(ExtendedCalendar),
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendedCalendar {
    pub exchange: String,
    /// Closed days to add, `YYYY-MM-DD`.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// The pipeline's cache settings.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineCache {
    /// The cache folder, relative to where quiver runs. `--cache-dir`
    /// overrides it.
    #[serde(default)]
    pub dir: Option<String>,
    /// `true` runs every node whatever the cache holds, as `--force`;
    /// usually a parameter: `force: ${force_recalculate}`.
    #[serde(default)]
    pub force: Option<Yaml>,
    /// The most disk the cache folder may take, e.g. `20GiB`: a run that
    /// leaves it larger removes the least recently used trading days
    /// (never the days the run itself covers).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_size: Option<Yaml>,
}

/// A fragment file, included by a node with `use:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FragmentSpec {
    /// The fragment's name.
    pub fragment: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Parameters the including node sets with `with:`.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, ParamDecl>>")]
    pub params: Option<Yaml>,
    /// Names of the inputs the including node must provide in `inputs:`.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The node whose output is the fragment's output.
    pub output: String,
    /// The fragment's nodes, written as a pipeline's.
    #[schemars(with = "BTreeMap<String, NodeSpec>")]
    pub nodes: Yaml,
}

/// The declared type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Int,
    Float,
    Bool,
    Date,
    List,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
            ParamType::Date => "date",
            ParamType::List => "list",
        })
    }
}

/// A parameter declaration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamDecl {
    #[serde(rename = "type")]
    pub ty: ParamType,
    #[serde(default)]
    pub default: Option<Yaml>,
    /// A required parameter has no default and must be set.
    #[serde(default)]
    pub required: bool,
    /// The only values allowed.
    #[serde(default)]
    pub choices: Option<Vec<Yaml>>,
    /// Why only `choices` are allowed: said when another value is given,
    /// e.g. "the index is defined on 5-minute candles".
    #[serde(default)]
    pub because: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// A secret (a password, an API key): its value never appears in a
    /// plan, report, log line or error message, and the cache keeps only
    /// its hash.
    #[serde(default)]
    pub secret: bool,
}

/// One node as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["op"]}, {"required": ["use"]}]))]
pub struct NodeSpec {
    /// The operator, e.g. `fetch.synthetic`. Exactly one of `op` and `use`.
    #[serde(default)]
    pub op: Option<String>,
    /// A fragment file to include, relative to this file.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// Operator parameters, or the fragment's parameters with `use`.
    #[serde(default)]
    pub with: Option<Yaml>,
    /// A list of references, or a map of input name to a reference or an
    /// inline node.
    #[serde(default)]
    #[schemars(with = "Option<Inputs>")]
    pub inputs: Option<Yaml>,
    /// `VAR in LIST`: one node per element.
    #[serde(default)]
    pub foreach: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    // How the executor runs the node. (Fields inline rather than
    // `#[serde(flatten)]`, which does not combine with `deny_unknown_fields`.)
    /// The resource pool the node draws from (see `resources:`).
    #[serde(default)]
    pub resource: Option<String>,
    /// Retries after a transient failure: a count, or a policy.
    #[serde(default)]
    pub retries: Option<RetrySpec>,
    /// The longest one attempt may take, e.g. `30s`.
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
    /// What a failure of this node does to the run.
    #[serde(default)]
    pub on_error: Option<OnError>,
    /// For fan-ins: `all` fails the node when any instance is missing.
    #[serde(default)]
    pub require: Option<Require>,
    /// Whether the node's output is reused from the cache: `false`, `true`
    /// (for good, even for a live source), or `{ttl: 5m}`.
    #[serde(default)]
    pub cache: Option<CacheSpec>,
    /// `date`: one node per trading day of the node's date range (a
    /// source's start and end) or of its partitioned inputs, each cached on
    /// its own; consumers read the days concatenated in order.
    #[serde(default)]
    pub partition_by: Option<String>,
    /// With `partition_by: date` over partitioned inputs: day d also reads
    /// the N trading days before it (a rolling window's history), from
    /// every partitioned input (`lookback: 20`) or from those named
    /// (`lookback: {returns: 59}`). The query keeps the rows of day d.
    #[serde(default)]
    pub lookback: Option<LookbackSpec>,
    /// With `partition_by: date`: day d also reads this node's own output
    /// for the trading day before it, as the input named here (the first
    /// day goes without). For state carried from day to day, like an
    /// index level continuing from the previous close.
    #[serde(default)]
    pub previous: Option<String>,
}

/// The forms `inputs:` takes. The compiler reads them from the raw YAML;
/// this type only describes them to the editor schema.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)] // Never built: only its schema is used.
enum Inputs {
    /// Nodes read under their own names: `[ticks, info]`.
    List(Vec<String>),
    /// Input name → a reference (`node`, `node[KEY]`, `node[*]`) or a node
    /// written inline.
    Map(BTreeMap<String, Input>),
}

/// One input: a reference to a node, or a node written inline.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)] // Never built: only its schema is used.
enum Input {
    /// `node`, `node[KEY]` (one instance of a fan-out) or `node[*]` (all of them).
    Reference(String),
    Inline(Box<NodeSpec>),
}

/// `lookback: 20`, or `lookback: {returns: 59}`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum LookbackSpec {
    Days(u32),
    Inputs(BTreeMap<String, u32>),
}

/// `cache: false`, `cache: true` or `cache: {ttl: 5m}`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CacheSpec {
    Enabled(bool),
    Ttl(CacheTtl),
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheTtl {
    /// How long a stored output is reused, e.g. `5m`, `1h`, `7d`.
    pub ttl: DurationSpec,
}

/// `retries: 3`, or a policy.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RetrySpec {
    Count(u32),
    Policy(RetryPolicy),
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The wait before the first retry; doubles each retry, with jitter.
    #[serde(default)]
    pub backoff: Option<DurationSpec>,
    /// The longest wait between attempts.
    #[serde(default)]
    pub max_backoff: Option<DurationSpec>,
}

/// `fail` (the default), `skip`, or `{default: VALUE}`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    Fail,
    Skip,
    Default(Yaml),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Require {
    All,
    Any,
}

/// A resource pool.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Requests in flight at once.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Requests started per unit of time: `20/s`, `600/min`.
    #[serde(default)]
    pub rate: Option<RateSpec>,
    /// Default timeout per attempt for nodes using this resource.
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
    /// Default retries for nodes using this resource.
    #[serde(default)]
    pub retries: Option<RetrySpec>,
    #[serde(default)]
    pub circuit_breaker: Option<BreakerSpec>,
    /// Keep `rate` in Redis, `redis://HOST:PORT[/DB]`: every quiver process
    /// using this resource and URL together stays under the rate. If Redis
    /// cannot be reached, each process keeps the rate alone, and says so.
    #[serde(default)]
    pub shared: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long it stays open before letting one trial request through.
    pub cooldown: DurationSpec,
}

/// A duration written as `250ms`, `30s`, `5m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("'{text}' has no unit; write e.g. '500ms', '30s' or '5m'"))?;
        let (number, unit) = text.split_at(split);
        let n: f64 = number.parse().map_err(|_| {
            format!("'{text}' is not a duration; write e.g. '500ms', '30s' or '5m'")
        })?;
        let secs = match unit.trim() {
            "us" | "µs" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            other => {
                return Err(format!(
                    "unknown unit '{other}' in '{text}'; use one of us, ms, s, m, h, d"
                ));
            }
        };
        Ok(DurationSpec(Duration::from_secs_f64(secs)))
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DurationSpec::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^\\s*[0-9.]+\\s*(us|µs|ms|s|m|min|h|d)\\s*$",
            "description": "A duration: `250ms`, `30s`, `5m`, `1h` or `7d`.",
        })
    }
}

/// A rate written as `20/s`, `600/min` or `5000/h`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    pub count: u32,
    pub per: Duration,
}

impl RateSpec {
    pub fn parse(text: &str) -> Result<Self, String> {
        let help = "write a rate as COUNT/UNIT, e.g. '20/s' or '600/min'";
        let (count, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("'{text}' is not a rate; {help}"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("'{count}' is not a whole number; {help}"))?;
        if count == 0 {
            return Err(format!("a rate of 0 never lets anything through; {help}"));
        }
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" | "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => return Err(format!("unknown unit '{other}'; {help}")),
        };
        Ok(RateSpec { count, per })
    }
}

impl<'de> Deserialize<'de> for RateSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        RateSpec::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for RateSpec {
    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^\\s*[1-9][0-9]*\\s*/\\s*(s|m|min|h)\\s*$",
            "description": "A rate, COUNT/UNIT: `20/s`, `600/min` or `5000/h`.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            DurationSpec::parse("250ms").unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            DurationSpec::parse("2m").unwrap().0,
            Duration::from_secs(120)
        );
        assert!(DurationSpec::parse("10").unwrap_err().contains("no unit"));
        assert_eq!(
            DurationSpec::parse("7d").unwrap().0,
            Duration::from_secs(7 * 86400)
        );
        assert!(
            DurationSpec::parse("10w")
                .unwrap_err()
                .contains("unknown unit 'w'")
        );
    }

    #[test]
    fn rates() {
        let r = RateSpec::parse("600/min").unwrap();
        assert_eq!((r.count, r.per), (600, Duration::from_secs(60)));
        assert!(RateSpec::parse("20").is_err());
        assert!(RateSpec::parse("0/s").is_err());
        // The units of durations: `s`, not `sec`.
        assert!(RateSpec::parse("20/sec").is_err());
    }
}
