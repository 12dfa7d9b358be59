//! `${name}` interpolation. A string that is exactly one reference takes the
//! referenced value with its type (a list stays a list); references inside
//! longer strings are replaced by their text. `$${` writes a literal `${`.

use serde_json::Value as Json;

use super::params::Params;
use crate::plan::Secrets;
use crate::spec::{Pos, Value, Yaml};

/// The names visible at one place: parameters, then `foreach` variables
/// (innermost last).
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub params: &'a Params,
    pub var: Option<(&'a str, &'a Json, &'a Scope<'a>)>,
}

impl<'a> Scope<'a> {
    pub fn new(params: &'a Params) -> Self {
        Scope { params, var: None }
    }

    pub fn with_var(&'a self, name: &'a str, value: &'a Json) -> Scope<'a> {
        Scope {
            params: self.params,
            var: Some((name, value, self)),
        }
    }

    /// The value `name` names: a parameter or variable, or a field of one,
    /// `item.ticker`.
    pub fn get(&self, name: &str) -> Option<&'a Json> {
        if let Some((root, path)) = name.split_once('.')
            && !root.starts_with("env:")
        {
            let mut value = self.get(root)?;
            for field in path.split('.') {
                value = value.as_object()?.get(field.trim())?;
            }
            return Some(value);
        }
        let mut scope = self;
        loop {
            match scope.var {
                Some((n, v, _)) if n == name => return Some(v),
                Some((_, _, parent)) => scope = parent,
                None => return scope.params.get(name),
            }
        }
    }

    pub fn names(&self) -> Vec<&'a str> {
        let mut out: Vec<&str> = self.params.keys().map(String::as_str).collect();
        let mut scope = self;
        while let Some((n, _, parent)) = scope.var {
            out.push(n);
            scope = parent;
        }
        out
    }
}

/// A reference that names nothing in scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Unresolved {
    pub name: String,
    pub suggestion: Option<String>,
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(var) = self.name.strip_prefix(ENV) {
            return write!(
                f,
                "environment variable '{var}' is not set; set it where quiver runs (export {var}=…)"
            );
        }
        write!(f, "unresolved reference '${{{}}}'", self.name)?;
        match &self.suggestion {
            Some(s) => write!(f, " — did you mean '${{{s}}}'?"),
            None => write!(f, "; declare it under params:"),
        }
    }
}

/// How a reference names an environment variable: `${env:API_KEY}`.
const ENV: &str = "env:";

/// Adds to `params` the environment variables the strings of `doc` read,
/// `${env:NAME}`, as parameters named `env:NAME` (those that are set; a
/// reference to one that is not is reported where it is written). Their
/// values are secrets.
pub fn env_params(doc: &Yaml, params: &mut Params, secrets: &mut Secrets) {
    match &doc.value {
        Value::Str(s) => {
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${env:") {
                let after = &rest[i + 2..];
                let Some(end) = after.find('}') else { break };
                let name = after[..end].trim();
                if let Some(var) = name.strip_prefix(ENV)
                    && !params.contains_key(name)
                    && let Ok(value) = std::env::var(var.trim())
                {
                    let value = Json::String(value);
                    secrets.add(&value);
                    params.insert(name.to_string(), value);
                }
                rest = &after[end..];
            }
        }
        Value::Seq(items) => items.iter().for_each(|y| env_params(y, params, secrets)),
        Value::Map(entries) => entries
            .iter()
            .for_each(|(_, v)| env_params(v, params, secrets)),
        _ => {}
    }
}

/// Interpolates every string in `node`, whose YAML path is `path`. Errors
/// carry the path and position of the string they are in.
pub fn interpolate(
    node: &Yaml,
    path: &str,
    scope: &Scope,
    errors: &mut Vec<(String, Pos, Unresolved)>,
) -> Yaml {
    match &node.value {
        Value::Str(s) if s.contains('$') => match interpolate_str(s, scope) {
            Ok(Json::String(text)) => Yaml::new(Value::Str(text), node.pos),
            Ok(json) => Yaml::from_json(&json, node.pos),
            Err(e) => {
                errors.push((path.to_string(), node.pos, e));
                node.clone()
            }
        },
        Value::Seq(items) => Yaml::new(
            Value::Seq(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| interpolate(item, &format!("{path}[{i}]"), scope, errors))
                    .collect(),
            ),
            node.pos,
        ),
        Value::Map(entries) => Yaml::new(
            Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let path = format!("{path}.{}", k.scalar_text());
                        (k.clone(), interpolate(v, &path, scope, errors))
                    })
                    .collect(),
            ),
            node.pos,
        ),
        _ => node.clone(),
    }
}

/// Interpolates one string; a lone `${x}` returns `x`'s value as it is.
pub fn interpolate_str(s: &str, scope: &Scope) -> Result<Json, Unresolved> {
    let lookup = |name: &str| {
        scope.get(name).ok_or_else(|| Unresolved {
            name: name.to_string(),
            suggestion: match name.starts_with(ENV) {
                true => None,
                false => crate::diag::suggest(name, scope.names()).map(str::to_string),
            },
        })
    };
    if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !name.contains(['{', '}', '$'])
    {
        return lookup(name.trim()).cloned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = r;
        } else if let Some(r) = after.strip_prefix("${") {
            let Some(end) = r.find('}') else {
                out.push_str(after);
                rest = "";
                break;
            };
            let value = lookup(r[..end].trim())?;
            push_text(&mut out, value);
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(Json::String(out))
}

fn push_text(out: &mut String, value: &Json) {
    match value {
        Json::String(s) => out.push_str(s),
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_text(out, item);
            }
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> Params {
        let mut p = Params::new();
        p.insert("symbols".into(), json!(["FPT", "VNM"]));
        p.insert("start".into(), json!("2026-01-05"));
        p.insert("n".into(), json!(3));
        p
    }

    #[test]
    fn a_lone_reference_keeps_its_type() {
        let p = params();
        let scope = Scope::new(&p);
        assert_eq!(
            interpolate_str("${symbols}", &scope).unwrap(),
            json!(["FPT", "VNM"])
        );
        assert_eq!(interpolate_str("${n}", &scope).unwrap(), json!(3));
    }

    #[test]
    fn references_inside_text_are_replaced_by_text() {
        let p = params();
        let sym = json!("FPT");
        let root = Scope::new(&p);
        let scope = root.with_var("symbol", &sym);
        assert_eq!(
            interpolate_str(
                "from ${start}: ${symbol} of ${symbols}, $${literal}",
                &scope
            )
            .unwrap(),
            json!("from 2026-01-05: FPT of FPT, VNM, ${literal}")
        );
    }

    #[test]
    fn fields_of_a_record_are_read_with_dots() {
        let p = params();
        let item = json!({"id": "n001", "ticker": "FPT", "meta": {"lang": "vi"}});
        let root = Scope::new(&p);
        let scope = root.with_var("item", &item);
        assert_eq!(
            interpolate_str("/v1/float/${item.ticker}?l=${item.meta.lang}", &scope).unwrap(),
            json!("/v1/float/FPT?l=vi")
        );
        assert_eq!(
            interpolate_str("${item.id}", &scope).unwrap(),
            json!("n001")
        );
        assert!(interpolate_str("${item.tickr}", &scope).is_err());
        assert!(interpolate_str("${start.x}", &scope).is_err());
    }

    #[test]
    fn unresolved_references_suggest_a_name() {
        let p = params();
        let err = interpolate_str("x ${strat} y", &Scope::new(&p)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unresolved reference '${strat}' — did you mean '${start}'?"
        );
    }
}
