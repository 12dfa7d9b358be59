//! Spec → plan policies: a resource's limits, and each node's retries,
//! timeout, failure policy and fan-in requirement. An `on_error` default
//! becomes a table here, so a default that is not one is a compile error at
//! its place in the file, not a surprise when the node fails mid-run.

use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;
use quiver_operators::Table;
use serde_json::Value as Json;

use super::interp::{Scope, interpolate};
use crate::diag::{Diagnostic, Diagnostics};
use crate::plan::{
    AttemptPolicy, BreakerPolicy, CacheSetting, NodePolicy, OnError, Rate, Require, ResourcePolicy,
    RetryPolicy, SharedRate,
};
use crate::spec::{
    CacheSpec, NodeSpec, OnError as OnErrorSpec, Require as RequireSpec, ResourceSpec, RetrySpec,
    Yaml,
};

/// A resource's limits as the executor reads them.
pub fn resource(spec: &ResourceSpec) -> ResourcePolicy {
    ResourcePolicy {
        concurrency: spec.concurrency,
        rate: spec.rate.map(|r| Rate {
            count: r.count,
            per: r.per,
        }),
        timeout: spec.timeout.map(|d| d.0),
        retry: spec.retries.as_ref().map(retry),
        breaker: spec.circuit_breaker.as_ref().map(|b| BreakerPolicy {
            failures: b.failures,
            cooldown: b.cooldown.0,
        }),
        shared: spec
            .shared
            .as_deref()
            .and_then(|url| SharedRate::parse(url).ok()),
    }
}

fn retry(spec: &RetrySpec) -> RetryPolicy {
    match spec {
        RetrySpec::Count(n) => RetryPolicy::attempts(n.saturating_add(1)),
        RetrySpec::Policy(p) => RetryPolicy {
            max_attempts: p.max_attempts.max(1),
            backoff: p.backoff.map_or(RetryPolicy::DEFAULT_BACKOFF, |d| d.0),
            max_backoff: p
                .max_backoff
                .map_or(RetryPolicy::DEFAULT_MAX_BACKOFF, |d| d.0),
        },
    }
}

/// How a node's attempts go: its own retries and timeout over its resource's.
pub fn attempts(spec: &NodeSpec, resource: Option<&ResourcePolicy>) -> AttemptPolicy {
    AttemptPolicy {
        retry: match &spec.retries {
            Some(own) => retry(own),
            None => resource.and_then(|r| r.retry).unwrap_or_default(),
        },
        timeout: spec
            .timeout
            .map(|d| d.0)
            .or(resource.and_then(|r| r.timeout)),
    }
}

/// The policy of one node instance declared at `path` in `file`. Problems
/// are reported into `diags`; the policy returned is then a stand-in.
pub fn node(
    file: &Arc<Path>,
    path: &str,
    spec: &NodeSpec,
    scope: &Scope,
    resources: &IndexMap<String, ResourcePolicy>,
    diags: &mut Diagnostics,
) -> NodePolicy {
    // An unknown resource is reported where the node is expanded.
    let resource = spec
        .resource
        .as_deref()
        .and_then(|name| resources.get_full(name));
    let on_error = match &spec.on_error {
        None | Some(OnErrorSpec::Fail) => OnError::Fail,
        Some(OnErrorSpec::Skip) => OnError::Skip,
        Some(OnErrorSpec::Default(value)) => {
            let path = format!("{path}.on_error.default");
            match default_table(file, value, &path, scope, diags) {
                Some(table) => OnError::Default(Arc::new(table)),
                None => OnError::Fail,
            }
        }
    };
    NodePolicy {
        resource: resource.map(|(i, _, _)| i),
        attempts: attempts(spec, resource.map(|(_, _, r)| r)),
        on_error,
        require: match spec.require {
            Some(RequireSpec::All) => Require::All,
            Some(RequireSpec::Any) | None => Require::Any,
        },
        cache: match &spec.cache {
            None => CacheSetting::Operator,
            Some(CacheSpec::Enabled(false)) => CacheSetting::Off,
            Some(CacheSpec::Enabled(true)) => CacheSetting::Forever,
            Some(CacheSpec::Ttl(t)) => CacheSetting::Ttl(t.ttl.0),
        },
    }
}

/// The table an `on_error: {default: …}` value stands for, `${…}` resolved.
fn default_table(
    file: &Arc<Path>,
    value: &Yaml,
    path: &str,
    scope: &Scope,
    diags: &mut Diagnostics,
) -> Option<Table> {
    let mut unresolved = Vec::new();
    let value = interpolate(value, path, scope, &mut unresolved);
    if !unresolved.is_empty() {
        for (path, pos, e) in unresolved {
            diags.push(Diagnostic::new(file, Some(pos), path, e.to_string()));
        }
        return None;
    }
    match table_from_json(&value.to_json()) {
        Ok(table) => Some(table),
        Err(message) => {
            diags.push(Diagnostic::new(file, Some(value.pos), path, message));
            None
        }
    }
}

/// A table from rows written as JSON: a mapping is one row, a list of
/// mappings is rows; column types are inferred.
pub fn table_from_json(value: &Json) -> Result<Table, String> {
    use quiver_operators::arrow::json::ReaderBuilder;
    use quiver_operators::arrow::json::reader::infer_json_schema_from_iterator;
    let help = "write a default as a mapping of column to value, or a list of them, e.g. {default: {symbol: FPT, close: 0.0}}";
    let rows: Vec<Json> = match value {
        Json::Object(_) => vec![value.clone()],
        // No rows: the node produces nothing, as a table.
        Json::Array(items) if items.is_empty() => return Ok(Table::empty()),
        Json::Array(items) if items.iter().all(Json::is_object) => items.clone(),
        other => {
            let found = match other {
                Json::Array(_) => "a list holding something other than mappings".to_string(),
                Json::String(s) => format!("the text '{s}'"),
                other => other.to_string(),
            };
            return Err(format!("the default is {found}, not rows; {help}"));
        }
    };
    let not_a_table = |e: quiver_operators::arrow::error::ArrowError| {
        let why = match &e {
            quiver_operators::arrow::error::ArrowError::JsonError(why) => why.clone(),
            other => other.to_string(),
        };
        format!(
            "the default's rows do not make one table ({why}); give each column one type in every row"
        )
    };
    let schema = infer_json_schema_from_iterator(rows.iter().map(Ok)).map_err(not_a_table)?;
    if schema.fields().is_empty() {
        return Err(format!("the default has no columns; {help}"));
    }
    let schema = Arc::new(schema);
    let mut decoder = ReaderBuilder::new(schema.clone())
        .build_decoder()
        .map_err(not_a_table)?;
    decoder.serialize(&rows).map_err(not_a_table)?;
    let batch = decoder.flush().map_err(not_a_table)?;
    Ok(Table::new(schema, batch.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::spec::DurationSpec;

    fn node_spec(yaml: &str) -> NodeSpec {
        let doc = crate::spec::yaml::parse(yaml).unwrap();
        crate::spec::de::from_yaml(&doc, "nodes.n").unwrap()
    }

    #[test]
    fn node_settings_override_the_resource() {
        let resource = resource(&ResourceSpec {
            concurrency: Some(6),
            rate: None,
            timeout: Some(DurationSpec(Duration::from_secs(30))),
            retries: Some(RetrySpec::Count(3)),
            circuit_breaker: None,
            shared: None,
        });
        let plain = attempts(&node_spec("op: x"), Some(&resource));
        assert_eq!(
            (plain.retry.max_attempts, plain.timeout),
            (4, Some(Duration::from_secs(30)))
        );
        let own = attempts(
            &node_spec("{op: x, retries: {max_attempts: 2, backoff: 10ms}, timeout: 1s}"),
            Some(&resource),
        );
        assert_eq!(
            (own.retry.max_attempts, own.timeout),
            (2, Some(Duration::from_secs(1)))
        );
        assert_eq!(own.retry.backoff(1, 1.0), Duration::from_millis(10));
        assert_eq!(own.retry.backoff(3, 1.0), Duration::from_millis(40));
        assert_eq!(own.retry.backoff(3, 0.0), Duration::from_millis(20));
        assert_eq!(
            attempts(&node_spec("op: x"), None),
            AttemptPolicy::default()
        );
    }

    #[test]
    fn defaults_become_tables_or_say_why_not() {
        let rows = serde_json::json!([{"symbol": "FPT", "free_float": 0.5}, {"symbol": "VNM", "free_float": 0.25}]);
        let t = table_from_json(&rows).unwrap();
        assert_eq!((t.num_rows(), t.schema().fields().len()), (2, 2));
        assert_eq!(
            table_from_json(&serde_json::json!({"a": 1}))
                .unwrap()
                .num_rows(),
            1
        );
        assert_eq!(
            table_from_json(&serde_json::json!([])).unwrap().num_rows(),
            0
        );
        for (bad, why) in [
            (serde_json::json!(5), "the default is 5, not rows"),
            (
                serde_json::json!([1, 2]),
                "a list holding something other than mappings",
            ),
            (serde_json::json!({}), "the default has no columns"),
        ] {
            let e = table_from_json(&bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
