//! Small tables whose every output cell can be checked by eye, then the
//! real daily prices.

use datafusion::arrow::array::Scalar;
use datafusion::arrow::array::{BooleanArray, Float64Array, Int64Array};
use datafusion::arrow::compute::{filter_record_batch, kernels::boolean::or, kernels::cmp::eq};
use datafusion::arrow::util::pretty::pretty_format_batches;
use serde_json::{Value, json};

use super::*;

fn dates(days: &[&str]) -> ArrayRef {
    cast(&StringArray::from(days.to_vec()), &DataType::Date32).unwrap()
}

fn input(name: &str, columns: Vec<(&str, ArrayRef)>) -> Input {
    Input {
        name: name.into(),
        table: Arc::new(Table::from_batch(
            RecordBatch::try_from_iter(columns).unwrap(),
        )),
    }
}

/// AAA trades 01-02, 01-03, then not until 01-08 (a two-day gap over
/// 01-04 and 01-05; 01-06/07 is a weekend). BBB lists on 01-04.
fn prices() -> Input {
    input(
        "prices",
        vec![
            (
                "symbol",
                Arc::new(StringArray::from(vec![
                    "BBB", "AAA", "AAA", "BBB", "AAA", "BBB",
                ])),
            ),
            (
                "date",
                dates(&[
                    "2024-01-04",
                    "2024-01-02",
                    "2024-01-03",
                    "2024-01-05",
                    "2024-01-08",
                    "2024-01-08",
                ]),
            ),
            (
                "close",
                Arc::new(Float64Array::from(vec![20.0, 10.0, 11.0, 21.0, 13.0, 22.0])),
            ),
            (
                "volume",
                Arc::new(Int64Array::from(vec![200, 100, 110, 210, 130, 220])),
            ),
        ],
    )
}

fn build(params: Value) -> Result<Arc<dyn Operator>, ParamError> {
    crate::registry()
        .get("align.timestamps")
        .unwrap()
        .build(params)
}

async fn run(params: Value, inputs: Vec<Input>) -> Result<Table, OpError> {
    build(params)
        .unwrap()
        .execute(&crate::ExecContext::standalone(), Inputs(inputs))
        .await
}

async fn pretty(params: Value, inputs: Vec<Input>) -> String {
    let out = run(params, inputs).await.unwrap();
    pretty_format_batches(out.batches()).unwrap().to_string()
}

#[tokio::test]
async fn outer_long_gives_every_symbol_a_row_at_every_date() {
    // BBB is null before it lists; AAA is null over its gap.
    assert_eq!(
        pretty(json!({}), vec![prices()]).await,
        "\
+--------+------------+-------+--------+
| symbol | date       | close | volume |
+--------+------------+-------+--------+
| AAA    | 2024-01-02 | 10.0  | 100    |
| BBB    | 2024-01-02 |       |        |
| AAA    | 2024-01-03 | 11.0  | 110    |
| BBB    | 2024-01-03 |       |        |
| AAA    | 2024-01-04 |       |        |
| BBB    | 2024-01-04 | 20.0  | 200    |
| AAA    | 2024-01-05 |       |        |
| BBB    | 2024-01-05 | 21.0  | 210    |
| AAA    | 2024-01-08 | 13.0  | 130    |
| BBB    | 2024-01-08 | 22.0  | 220    |
+--------+------------+-------+--------+"
    );
}

#[tokio::test]
async fn inner_wide_keeps_only_shared_dates_and_names_column_symbol() {
    assert_eq!(
        pretty(json!({"join": "inner", "layout": "wide"}), vec![prices()]).await,
        "\
+------------+-----------+-----------+------------+------------+
| date       | close_AAA | close_BBB | volume_AAA | volume_BBB |
+------------+-----------+-----------+------------+------------+
| 2024-01-08 | 13.0      | 22.0      | 130        | 220        |
+------------+-----------+-----------+------------+------------+"
    );
}

#[tokio::test]
async fn ffill_respects_its_limit_and_never_fills_before_a_listing() {
    // limit 1: AAA's 01-03 close fills 01-04 but not 01-05. BBB has no
    // row before 01-04, so 01-02 and 01-03 stay null.
    let params = json!({"layout": "wide", "columns": ["close"], "ffill": {"limit": 1}});
    assert_eq!(
        pretty(params, vec![prices()]).await,
        "\
+------------+-----------+-----------+
| date       | close_AAA | close_BBB |
+------------+-----------+-----------+
| 2024-01-02 | 10.0      |           |
| 2024-01-03 | 11.0      |           |
| 2024-01-04 | 11.0      | 20.0      |
| 2024-01-05 |           | 21.0      |
| 2024-01-08 | 13.0      | 22.0      |
+------------+-----------+-----------+"
    );
    // Without a limit the gap is filled through; still nothing before 01-04 for BBB.
    let params = json!({"layout": "wide", "columns": ["close"], "ffill": {}});
    let out = pretty(params, vec![prices()]).await;
    assert!(
        out.contains("| 2024-01-05 | 11.0      | 21.0      |"),
        "{out}"
    );
    assert!(
        out.contains("| 2024-01-03 | 11.0      |           |"),
        "{out}"
    );
}

#[tokio::test]
async fn calendar_join_uses_exactly_the_given_times() {
    // Unordered, with 01-09 where nobody has a row; 01-02 and 01-08 are
    // not in the calendar, so their rows are dropped.
    let calendar = json!(["2024-01-05", "2024-01-03", "2024-01-09", "2024-01-04"]);
    let params = json!({"join": "calendar", "calendar": calendar, "layout": "wide",
                            "columns": ["close"]});
    let exact = "\
+------------+-----------+-----------+
| date       | close_AAA | close_BBB |
+------------+-----------+-----------+
| 2024-01-03 | 11.0      |           |
| 2024-01-04 |           | 20.0      |
| 2024-01-05 |           | 21.0      |
| 2024-01-09 |           |           |
+------------+-----------+-----------+";
    assert_eq!(pretty(params, vec![prices()]).await, exact);

    // The same calendar as an input, from its only column.
    let days = input(
        "calendar",
        vec![(
            "day",
            dates(&["2024-01-05", "2024-01-03", "2024-01-09", "2024-01-04"]),
        )],
    );
    let params = json!({"join": "calendar", "layout": "wide", "columns": ["close"]});
    assert_eq!(pretty(params, vec![prices(), days]).await, exact);

    // With ffill limit 1, 01-09 takes each symbol's 01-08 row, which lies
    // between calendar dates: a new row, so a new allowance of one fill.
    // AAA's 01-03 row fills 01-04 only.
    let params = json!({"join": "calendar", "calendar": calendar, "layout": "wide",
                            "columns": ["close"], "ffill": {"limit": 1}});
    assert_eq!(
        pretty(params, vec![prices()]).await,
        "\
+------------+-----------+-----------+
| date       | close_AAA | close_BBB |
+------------+-----------+-----------+
| 2024-01-03 | 11.0      |           |
| 2024-01-04 | 11.0      | 20.0      |
| 2024-01-05 |           | 21.0      |
| 2024-01-09 | 13.0      | 22.0      |
+------------+-----------+-----------+"
    );
}

#[tokio::test]
async fn one_input_per_symbol_is_named_by_the_input() {
    // Intraday timestamps (default time column `ts`); MSFT is declared
    // first but AAPL sorts first.
    let ts = |t: &[&str]| {
        let ty = DataType::Timestamp(TimeUnit::Second, Some("America/New_York".into()));
        cast(&StringArray::from(t.to_vec()), &ty).unwrap()
    };
    let msft = input(
        "MSFT",
        vec![
            (
                "ts",
                ts(&["2024-03-11T09:30:00-04:00", "2024-03-11T09:31:00-04:00"]),
            ),
            ("close", Arc::new(Float64Array::from(vec![400.0, 401.0]))),
        ],
    );
    let aapl = input(
        "AAPL",
        vec![
            ("ts", ts(&["2024-03-11T09:31:00-04:00"])),
            ("close", Arc::new(Float64Array::from(vec![170.0]))),
        ],
    );
    assert_eq!(
        pretty(json!({}), vec![msft, aapl]).await,
        "\
+--------+---------------------------+-------+
| symbol | ts                        | close |
+--------+---------------------------+-------+
| AAPL   | 2024-03-11T09:30:00-04:00 |       |
| MSFT   | 2024-03-11T09:30:00-04:00 | 400.0 |
| AAPL   | 2024-03-11T09:31:00-04:00 | 170.0 |
| MSFT   | 2024-03-11T09:31:00-04:00 | 401.0 |
+--------+---------------------------+-------+"
    );
}

#[tokio::test]
async fn runtime_errors_explain_themselves() {
    let twice = input(
        "x",
        vec![
            ("symbol", Arc::new(StringArray::from(vec!["A", "A"]))),
            ("date", dates(&["2024-01-02", "2024-01-02"])),
        ],
    );
    let err = run(json!({}), vec![twice]).await.unwrap_err().to_string();
    assert!(
        err.contains("symbol 'A' has two rows at 2024-01-02"),
        "{err}"
    );

    let err = run(json!({"join": "calendar"}), vec![prices()])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs the times"), "{err}");

    let err = run(json!({"time": "day"}), vec![prices()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no time column 'day'") && err.contains("symbol, date"),
        "{err}"
    );
}

#[test]
fn bad_params_name_their_field() {
    for (params, path) in [
        (json!({"calendar": ["2024-01-02"]}), vec!["calendar"]),
        (
            json!({"join": "calendar", "calendar": []}),
            vec!["calendar"],
        ),
        (
            json!({"join": "calendar", "calendar": ["2024-01-02", "soon"]}),
            vec!["calendar", "1"],
        ),
        (json!({"ffill": {"limit": 0}}), vec!["ffill", "limit"]),
        (json!({"ffill": {"limt": 2}}), vec!["ffill", "limt"]),
        (json!({"columns": ["close", "close"]}), vec!["columns", "1"]),
        (json!({"columns": ["symbol"]}), vec!["columns", "0"]),
        (json!({"layout": "tall"}), vec!["layout"]),
        (json!({"join": "left"}), vec!["join"]),
    ] {
        let err = build(params.clone()).unwrap_err();
        assert_eq!(err.path, path, "{params}: {err}");
    }
}

/// The real daily prices, read by the crate's own `fetch.csv`.
async fn stocks() -> RecordBatch {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/stocks-daily/stocks.csv.gz"
    );
    let fetch = crate::registry()
        .get("fetch.csv")
        .unwrap()
        .build(json!({"path": path, "columns": ["Ticker", "Date", "Close"]}))
        .unwrap();
    fetch
        .execute(&crate::ExecContext::standalone(), Inputs::default())
        .await
        .unwrap()
        .concat()
        .unwrap()
}

#[tokio::test]
async fn real_prices_aapl_and_fb_outer() {
    let all = stocks().await;
    let ticker = all.column_by_name("Ticker").unwrap();
    let is = |t: &str| eq(ticker, &Scalar::new(StringArray::from(vec![t]))).unwrap();
    let keep: BooleanArray = or(&is("AAPL"), &is("FB")).unwrap();
    let two = Input {
        name: "stocks".into(),
        table: Arc::new(Table::from_batch(filter_record_batch(&all, &keep).unwrap())),
    };

    let params = json!({"key": "Ticker", "time": "Date", "layout": "wide"});
    let out = run(params, vec![two.clone()])
        .await
        .unwrap()
        .concat()
        .unwrap();
    let names: Vec<&str> = out
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["Date", "Close_AAPL", "Close_FB"]);
    // AAPL trades on every one of the 3,270 dates (2000-03-01..2013-03-01);
    // FB's 196 dates all fall among them.
    assert_eq!(out.num_rows(), 3270);
    let date = cast(out.column(0), &DataType::Utf8).unwrap();
    let date = date.as_string::<i32>();
    let aapl = out
        .column(1)
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    let fb = out
        .column(2)
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    assert_eq!(date.value(0), "2000-03-01");
    assert_eq!(date.value(3269), "2013-03-01");
    assert_eq!(aapl.null_count(), 0);
    assert_eq!(aapl.value(0), 130.31);
    let listing = (0..3270)
        .position(|i| date.value(i) == "2012-05-18")
        .unwrap();
    assert!(
        (0..listing).all(|i| fb.is_null(i)),
        "FB is null before 2012-05-18"
    );
    assert_eq!(fb.value(listing), 38.2318);
    assert_eq!(3270 - fb.null_count(), 196);

    // Long: both symbols at every date; inner: FB's dates only.
    let out = run(json!({"key": "Ticker", "time": "Date"}), vec![two.clone()])
        .await
        .unwrap();
    assert_eq!(out.num_rows(), 2 * 3270);
    let params = json!({"key": "Ticker", "time": "Date", "join": "inner"});
    let out = run(params, vec![two]).await.unwrap();
    assert_eq!(out.num_rows(), 2 * 196);
}
