use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use quiver::serve::{ApiConfig, Route, SyntheticApi};
use quiver::spec::DurationSpec;

#[derive(Args)]
pub struct ServeArgs {
    /// The port on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 8089)]
    port: u16,
    /// Requests answered per second, all routes together; beyond it, 429
    /// with Retry-After. Default: no limit.
    #[arg(long, value_name = "N")]
    rate: Option<u32>,
    /// The wait before each answer, e.g. `50ms`.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "0ms")]
    latency: Duration,
    /// The wait of one route, ROUTE=DURATION (`float=2.5s`); repeatable.
    #[arg(long = "route-latency", value_name = "ROUTE=DURATION", value_parser = route_latency)]
    route_latency: Vec<(Route, Duration)>,
    /// The share of requests answered 503, in [0, 1].
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    fail_rate: f64,
    /// A route that always answers 503; repeatable.
    #[arg(long, value_name = "ROUTE", value_parser = route)]
    down: Vec<Route>,
}

fn duration(text: &str) -> Result<Duration, String> {
    DurationSpec::parse(text).map(|d| d.0)
}

fn route(text: &str) -> Result<Route, String> {
    Route::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = Route::ALL.iter().map(|r| r.name()).collect();
        format!("no route '{text}'; routes: {}", names.join(", "))
    })
}

fn route_latency(text: &str) -> Result<(Route, Duration), String> {
    let (name, wait) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}': write ROUTE=DURATION, e.g. float=2.5s"))?;
    Ok((route(name)?, duration(wait)?))
}

/// Serves the synthetic market data until Ctrl-C, then prints what it
/// answered.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.fail_rate) {
        anyhow::bail!("--fail-rate {} is not in [0, 1]", args.fail_rate);
    }
    let config = ApiConfig {
        rate_per_second: args.rate,
        latency: args.latency,
        route_latency: args.route_latency.into_iter().collect(),
        fail_rate: args.fail_rate,
        down: args.down,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let api = SyntheticApi::start(&format!("127.0.0.1:{}", args.port), config)
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
        eprintln!(
            "serving synthetic market data on {} (routes: /v1/{{bars,trades,info,float,vwap,rvol}}/SYMBOL, /stats); Ctrl-C stops",
            api.url()
        );
        tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
        let stats = api.stats();
        eprintln!(
            "served {} (busiest second {}), {} rate-limited, {} failed, {} bad requests",
            stats.served_total(),
            stats.busiest_second(),
            stats.limited,
            stats.failed,
            stats.bad
        );
        Ok(ExitCode::SUCCESS)
    })
}
