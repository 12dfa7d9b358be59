//! The parameters of `features.compute`, as pipelines write them, and
//! their validation into [`Feature`]s.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::FeaturesOp;
use crate::operator::OpParams;
use crate::{Arity, Operator, ParamError, Workload};

/// Parameters of `features.compute`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeaturesParams {
    /// The time column that orders each series: Date32, Date64 or a
    /// timestamp of any unit, with or without a time zone. It may not hold
    /// nulls. Defaults to `ts`.
    ///
    /// ```yaml
    /// ts: date
    /// ```
    #[serde(default = "default_ts")]
    pub ts: String,

    /// The column (or columns) naming the series, e.g. the symbol: features
    /// are computed per distinct value, never across two series. Omit when
    /// the table holds one series. Rows need not be sorted: each series is
    /// put in time order (a stable sort, so rows with equal times keep
    /// their input order), and the output keeps the input's row order.
    ///
    /// ```yaml
    /// partition_by: symbol        # or [exchange, symbol]
    /// ```
    #[serde(default)]
    pub partition_by: Option<ColumnList>,

    /// The price column most features read. Defaults to `close`. Use the
    /// split-adjusted close for returns over long histories.
    ///
    /// ```yaml
    /// close: Adj Close
    /// ```
    #[serde(default = "default_close")]
    pub close: String,

    /// The high column, read by `atr` and `vwap`. Defaults to `high`.
    ///
    /// ```yaml
    /// high: High
    /// ```
    #[serde(default = "default_high")]
    pub high: String,

    /// The low column, read by `atr` and `vwap`. Defaults to `low`.
    ///
    /// ```yaml
    /// low: Low
    /// ```
    #[serde(default = "default_low")]
    pub low: String,

    /// The volume column, read by `vwap` and `relative_volume`. Defaults
    /// to `volume`.
    ///
    /// ```yaml
    /// volume: Volume
    /// ```
    #[serde(default = "default_volume")]
    pub volume: String,

    /// The features to add, each one Float64 column appended after the
    /// input's columns, in this order. All are computed in one call.
    /// Kinds, with n the `window` and, in brackets, the first non-null row
    /// of each series counting from 0:
    /// `return`, `log_return` (n defaults to 1) [n];
    /// `rolling_mean`, `rolling_min`, `rolling_max` [n-1];
    /// `rolling_std`, `zscore` (`ddof` 0, population, the default and
    /// TA-Lib's; or 1, sample) [n-1];
    /// `ema` (alpha 2/(n+1), seeded with the mean of the first n, as
    /// TA-Lib) [n-1];
    /// `rsi` (Wilder smoothing as TA-Lib, n defaults to 14) [n];
    /// `atr` (Wilder as TA-Lib, true range from row 1, n defaults to 14) [n];
    /// `vwap` (typical price or `column`, reset on each date of `ts` in its
    /// own time zone) [every row];
    /// `relative_volume` (volume ÷ the mean volume at the same time of day
    /// over the n previous sessions; for daily bars, ÷ the mean of the n
    /// previous bars; n defaults to 20).
    ///
    /// ```yaml
    /// features:
    ///   - {kind: return}                          # ret_1
    ///   - {kind: rolling_mean, window: 20}        # sma_20
    ///   - {kind: rolling_std, window: 20, ddof: 1, name: vol_20}
    ///   - {kind: ema, window: 12}                 # ema_12
    ///   - {kind: rsi}                             # rsi_14
    ///   - {kind: rolling_mean, window: 20, column: volume}   # sma_20_volume
    /// ```
    pub features: Vec<FeatureSpec>,
}

/// One column name, or a list of them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ColumnList {
    One(String),
    Many(Vec<String>),
}

impl ColumnList {
    fn into_vec(self) -> Vec<String> {
        match self {
            ColumnList::One(c) => vec![c],
            ColumnList::Many(c) => c,
        }
    }
}

fn default_ts() -> String {
    "ts".into()
}
fn default_close() -> String {
    "close".into()
}
fn default_high() -> String {
    "high".into()
}
fn default_low() -> String {
    "low".into()
}
fn default_volume() -> String {
    "volume".into()
}

/// One feature to compute.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// What to compute; each kind's description gives its formula, default
    /// window and first valid row.
    ///
    /// ```yaml
    /// kind: rolling_std
    /// ```
    pub kind: FeatureKind,

    /// The number of rows (bars) the feature looks back over. Required for
    /// `rolling_*`, `zscore` and `ema`; defaults to 1 for `return` and
    /// `log_return`, 14 for `rsi` and `atr`, 20 for `relative_volume`; not
    /// accepted by `vwap`.
    ///
    /// ```yaml
    /// window: 20
    /// ```
    pub window: Option<usize>,

    /// The input column, when not the default: `close` for most kinds,
    /// `volume` for `relative_volume`. For `vwap` it names a price column
    /// (e.g. a trade's `price`) to use instead of the typical price
    /// (high + low + close) / 3. Not accepted by `atr`, which reads `high`,
    /// `low` and `close`.
    ///
    /// ```yaml
    /// column: volume
    /// ```
    pub column: Option<String>,

    /// The output column's name. Defaults to the kind's short name and the
    /// window (`ret_1`, `logret_1`, `sma_20`, `std_20`, `min_20`, `max_20`,
    /// `z_20`, `ema_12`, `rsi_14`, `atr_14`, `rvol_20`, `vwap`), followed by
    /// `_COLUMN` when `column` is set, e.g. `sma_20_volume`.
    ///
    /// ```yaml
    /// name: vol_20
    /// ```
    pub name: Option<String>,

    /// For `rolling_std` and `zscore`: the divisor is `window - ddof`.
    /// 0 (the default) gives the population standard deviation, TA-Lib's
    /// STDDEV convention; 1 gives the sample standard deviation (pandas'
    /// `rolling().std()`, Polars' `rolling_std`).
    ///
    /// ```yaml
    /// ddof: 1
    /// ```
    pub ddof: Option<u8>,
}

/// The kinds of feature. Rows count from 0 within each partition; "null
/// before row r" means rows 0..r are null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Simple return over k rows, (x[t] - x[t-k]) / x[t-k] (TA-Lib ROCP).
    /// Default k 1; null before row k, and where x[t-k] is 0.
    Return,
    /// Log return over k rows, ln(x[t] / x[t-k]). Default k 1; null before
    /// row k, and where the ratio is not positive.
    LogReturn,
    /// Mean of the last n values (TA-Lib SMA). Null before row n-1.
    RollingMean,
    /// Standard deviation of the last n values, dividing by n - ddof
    /// (ddof 0 by default: population, TA-Lib STDDEV with nbdev 1). Null
    /// before row n-1; exactly 0 over a constant window.
    RollingStd,
    /// Smallest of the last n values (TA-Lib MIN). Null before row n-1.
    RollingMin,
    /// Largest of the last n values (TA-Lib MAX). Null before row n-1.
    RollingMax,
    /// (x[t] - mean) / std over the last n values including x[t], with
    /// `ddof` as for `rolling_std`. Null before row n-1, and over a
    /// constant window (std 0).
    Zscore,
    /// Exponential moving average with alpha 2 / (n + 1), seeded at row n-1
    /// with the mean of the first n values (TA-Lib EMA). Null before row n-1.
    Ema,
    /// Relative strength index with Wilder's smoothing (TA-Lib RSI): the
    /// first average gain and loss are the means over the first n changes,
    /// then avg = (avg * (n - 1) + change) / n. 100 * gain / (gain + loss),
    /// and 0 when both are 0 (as TA-Lib). Default n 14; null before row n.
    Rsi,
    /// Volume-weighted average price since the start of the session: the
    /// running sum of price × volume over the running sum of volume,
    /// reset on each new date. The price is the typical price
    /// (high + low + close) / 3, or `column`. The date is that of `ts` in
    /// its own time zone: a timestamp with a zone (`+07:00`,
    /// `America/New_York`) is read as local time there, one without a
    /// zone as written; for daily bars it is the bar's typical price.
    /// Rows with a missing price or volume are null and skipped. Null where
    /// the session's volume so far is 0. (TA-Lib has no session VWAP.)
    Vwap,
    /// Volume ÷ the mean volume of the same time-of-day slot over the n
    /// most recent earlier sessions that have a bar in that slot, the time
    /// of day being local as for `vwap`. For daily bars (Date32, or
    /// timestamps at one time of day) every bar is in the same slot, so
    /// this is volume ÷ the mean of the n previous bars, excluding the
    /// current one. Default n 20; null until the slot has n earlier
    /// values, and where their mean is 0. Missing volumes are skipped.
    RelativeVolume,
    /// Average true range with Wilder's smoothing (TA-Lib ATR). The true
    /// range TR[t] = max(high[t], close[t-1]) - min(low[t], close[t-1]) is
    /// undefined at row 0; the first ATR, at row n, is the mean of
    /// TR[1..=n], then atr = (atr * (n - 1) + TR) / n. Default n 14; null
    /// before row n.
    Atr,
}

impl FeatureKind {
    fn label(self) -> &'static str {
        match self {
            FeatureKind::Return => "return",
            FeatureKind::LogReturn => "log_return",
            FeatureKind::RollingMean => "rolling_mean",
            FeatureKind::RollingStd => "rolling_std",
            FeatureKind::RollingMin => "rolling_min",
            FeatureKind::RollingMax => "rolling_max",
            FeatureKind::Zscore => "zscore",
            FeatureKind::Ema => "ema",
            FeatureKind::Rsi => "rsi",
            FeatureKind::Vwap => "vwap",
            FeatureKind::RelativeVolume => "relative_volume",
            FeatureKind::Atr => "atr",
        }
    }

    /// The short name that starts default output names.
    fn prefix(self) -> &'static str {
        match self {
            FeatureKind::Return => "ret",
            FeatureKind::LogReturn => "logret",
            FeatureKind::RollingMean => "sma",
            FeatureKind::RollingStd => "std",
            FeatureKind::RollingMin => "min",
            FeatureKind::RollingMax => "max",
            FeatureKind::Zscore => "z",
            FeatureKind::Ema => "ema",
            FeatureKind::Rsi => "rsi",
            FeatureKind::Vwap => "vwap",
            FeatureKind::RelativeVolume => "rvol",
            FeatureKind::Atr => "atr",
        }
    }

    /// The window when none is given; `None` when one is required.
    fn default_window(self) -> Option<usize> {
        match self {
            FeatureKind::Return | FeatureKind::LogReturn => Some(1),
            FeatureKind::Rsi | FeatureKind::Atr => Some(14),
            FeatureKind::RelativeVolume => Some(20),
            _ => None,
        }
    }

    /// The smallest window that defines the feature.
    fn min_window(self) -> usize {
        match self {
            FeatureKind::RollingStd | FeatureKind::Zscore | FeatureKind::Rsi => 2,
            _ => 1,
        }
    }
}

impl OpParams for FeaturesParams {
    const NAME: &'static str = "features.compute";
    const DOC: &'static str = "Adds per-series, time-ordered features to one input table: \
        simple and log returns, rolling mean / std / min / max / z-score, EMA, RSI and ATR \
        (TA-Lib conventions, checked against TA-Lib), session-anchored VWAP and relative \
        volume. `partition_by` names the series column (e.g. symbol); each series is sorted \
        by `ts` if needed, and the output keeps the input rows in their order with one \
        Float64 column per feature. Warm-up rows are null (see each kind for its first \
        valid row). A missing input (null, NaN or infinite) restarts windowed and smoothed \
        features; vwap and relative_volume skip the row. Outputs are never NaN: undefined \
        values are null.";
    const WORKLOAD: Workload = Workload::Cpu;
    const INPUTS: Arity = Arity::Exactly(1);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        // `ParamError` carries one path, so this reports the first problem,
        // checking fields in the order they are declared.
        for (field, value) in [
            ("ts", &self.ts),
            ("close", &self.close),
            ("high", &self.high),
            ("low", &self.low),
            ("volume", &self.volume),
        ] {
            if value.trim().is_empty() {
                return Err(ParamError::new(
                    &[field],
                    format!("{field} is empty; name a column, or omit it for the default"),
                ));
            }
        }
        let partition_by = self.partition_by.map(ColumnList::into_vec);
        let partition_by = partition_by.unwrap_or_default();
        if let Some(i) = partition_by.iter().position(|c| c.trim().is_empty()) {
            return Err(ParamError::new(
                &["partition_by", &i.to_string()],
                "a column name is empty",
            ));
        }
        if self.features.is_empty() {
            return Err(ParamError::new(
                &["features"],
                "features is an empty list; add at least one, e.g. \
                 `features: [{kind: rolling_mean, window: 20}]`",
            ));
        }

        let mut features: Vec<Feature> = Vec::with_capacity(self.features.len());
        for (i, spec) in self.features.into_iter().enumerate() {
            let feature = check_feature(i, spec)?;
            if let Some(j) = features.iter().position(|f| f.name == feature.name) {
                return Err(ParamError::new(
                    &["features", &i.to_string(), "name"],
                    format!(
                        "features {j} and {i} both output a column named '{}'; \
                         give one of them a `name:`",
                        feature.name
                    ),
                ));
            }
            features.push(feature);
        }
        Ok(Arc::new(FeaturesOp {
            ts: self.ts,
            partition_by,
            close: self.close,
            high: self.high,
            low: self.low,
            volume: self.volume,
            features,
        }))
    }
}

/// A validated feature: what to compute, over which column, named what.
#[derive(Debug, Clone)]
pub(super) struct Feature {
    pub kind: FeatureKind,
    pub window: usize,
    /// `column:` when given.
    pub column: Option<String>,
    pub ddof: u8,
    pub name: String,
}

fn check_feature(i: usize, spec: FeatureSpec) -> Result<Feature, ParamError> {
    let index = i.to_string();
    let error = |field: &str, message: String| {
        let path: Vec<&str> = if field.is_empty() {
            vec!["features", &index]
        } else {
            vec!["features", &index, field]
        };
        ParamError::new(&path, message)
    };
    let kind = spec.kind;
    let label = kind.label();

    let window = match (kind, spec.window) {
        (FeatureKind::Vwap, Some(_)) => {
            return Err(error(
                "window",
                "vwap takes no window: it is anchored to the session (each date)".into(),
            ));
        }
        (FeatureKind::Vwap, None) => 0,
        (_, Some(w)) if w < kind.min_window() => {
            return Err(error(
                "window",
                format!("{label} needs a window of at least {}", kind.min_window()),
            ));
        }
        (_, Some(w)) => w,
        (_, None) => kind.default_window().ok_or_else(|| {
            error(
                "",
                format!("{label} needs a window, e.g. `{{kind: {label}, window: 20}}`"),
            )
        })?,
    };

    let ddof = match (kind, spec.ddof) {
        (FeatureKind::RollingStd | FeatureKind::Zscore, Some(d @ (0 | 1))) => d,
        (FeatureKind::RollingStd | FeatureKind::Zscore, Some(d)) => {
            return Err(error(
                "ddof",
                format!("ddof is {d}; use 0 (population) or 1 (sample)"),
            ));
        }
        (FeatureKind::RollingStd | FeatureKind::Zscore, None) => 0,
        (_, Some(_)) => {
            return Err(error(
                "ddof",
                format!("{label} takes no ddof; only rolling_std and zscore do"),
            ));
        }
        (_, None) => 0,
    };
    if ddof as usize >= window && matches!(kind, FeatureKind::RollingStd | FeatureKind::Zscore) {
        return Err(error(
            "window",
            format!("a window of {window} with ddof {ddof} divides by zero; widen it"),
        ));
    }

    if let Some(column) = &spec.column {
        if kind == FeatureKind::Atr {
            return Err(error(
                "column",
                "atr reads the high, low and close columns; set those at the top level \
                 (`high:`, `low:`, `close:`) instead"
                    .into(),
            ));
        }
        if column.trim().is_empty() {
            return Err(error(
                "column",
                "column is empty; omit it for the default".into(),
            ));
        }
    }

    let name = match spec.name {
        Some(name) if name.trim().is_empty() => {
            return Err(error(
                "name",
                "name is empty; omit it for the default".into(),
            ));
        }
        Some(name) => name,
        None => {
            let mut name = kind.prefix().to_string();
            if kind != FeatureKind::Vwap {
                name.push_str(&format!("_{window}"));
            }
            if let Some(column) = &spec.column {
                name.push('_');
                name.push_str(column);
            }
            name
        }
    };
    Ok(Feature {
        kind,
        window,
        column: spec.column,
        ddof,
        name,
    })
}
