//! Parameters: declarations checked, defaults applied, overrides from
//! `--set` and `--params` typed and validated.

use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::plan::Secrets;
use crate::spec::de::from_yaml;
use crate::spec::{ParamDecl, ParamType, Pos, Value, Yaml};

/// A value set from outside the file, with where it came from.
#[derive(Debug, Clone)]
pub struct Override {
    pub name: String,
    pub value: Yaml,
    /// The file the value came from (`--params FILE`), or `<--set>`.
    pub source: Arc<Path>,
    /// Where it was set, for messages: `--set end_date`, `nodes.whale.with.symbols`.
    pub path: String,
    pub pos: Option<Pos>,
}

impl Override {
    /// Parses `NAME=VALUE` as given to `--set`; the value is read as YAML, so
    /// `[FPT, VNM]` is a list and `30` a number.
    pub fn parse_set(arg: &str) -> Result<Override, String> {
        let (name, text) = arg.split_once('=').ok_or_else(|| {
            format!("--set '{arg}': expected NAME=VALUE, e.g. --set end_date=2026-01-09")
        })?;
        let value = crate::spec::yaml::parse(text)
            .map_err(|e| format!("--set '{arg}': the value is not valid YAML: {}", e.message))?;
        let name = name.trim().to_string();
        Ok(Override {
            path: format!("--set {name}"),
            name,
            value,
            source: Arc::from(Path::new("<--set>")),
            pos: None,
        })
    }

    /// Reads a YAML file of `name: value` pairs, as given to `--params`.
    pub fn read_file(path: &Path) -> Result<Vec<Override>, String> {
        let text = crate::spec::yaml::read_file(path)
            .map_err(|e| format!("cannot read params file {}: {e}", path.display()))?;
        let doc = crate::spec::yaml::parse(&text)
            .map_err(|e| format!("{}:{}: {}", path.display(), e.pos, e.message))?;
        let source: Arc<Path> = Arc::from(path);
        match &doc.value {
            Value::Null => Ok(Vec::new()),
            Value::Map(entries) => Ok(entries
                .iter()
                .map(|(k, v)| Override {
                    name: k.scalar_text(),
                    path: k.scalar_text(),
                    pos: Some(k.pos),
                    value: v.clone(),
                    source: source.clone(),
                })
                .collect()),
            _ => Err(format!(
                "{}: a params file is a mapping of parameter names to values",
                path.display()
            )),
        }
    }
}

/// Resolved parameter values, in declaration order.
pub type Params = IndexMap<String, Json>;

/// The node that includes a fragment: a required fragment parameter left
/// unset is its mistake, fixed in its `with:`, not with `--set`.
pub struct Includer<'a> {
    pub file: &'a Arc<Path>,
    pub pos: Pos,
    /// The YAML path of the including node's `with:` (or of the node).
    pub path: String,
    pub fragment: &'a str,
}

/// Reads the `params:` section of `file` and applies `overrides`; `includer`
/// is the including node when `file` is a fragment.
pub fn resolve(
    file: &Arc<Path>,
    section_path: &str,
    section: Option<&Yaml>,
    overrides: &[Override],
    includer: Option<&Includer>,
    secrets: &mut Secrets,
    diags: &mut Diagnostics,
) -> Params {
    let mut decls: IndexMap<String, (ParamDecl, Pos)> = IndexMap::new();
    if let Some(section) = section {
        match section.as_map() {
            Some(entries) => {
                for (key, node) in entries {
                    let name = key.scalar_text();
                    let path = format!("{section_path}.{name}");
                    match from_yaml::<ParamDecl>(node, &path) {
                        Ok(decl) => {
                            check_decl(file, &path, &name, &decl, node.pos, diags);
                            decls.insert(name, (decl, node.pos));
                        }
                        Err(e) => diags.push(Diagnostic::new(
                            file,
                            e.pos,
                            e.path.unwrap_or(path),
                            e.message,
                        )),
                    }
                }
            }
            None if matches!(section.value, Value::Null) => {}
            None => diags.push(Diagnostic::new(
                file,
                Some(section.pos),
                section_path,
                format!(
                    "expected a mapping of parameter declarations, found {}",
                    section.kind()
                ),
            )),
        }
    }

    let mut values = Params::new();
    for (name, (decl, pos)) in &decls {
        let path = format!("{section_path}.{name}");
        let set = overrides.iter().rev().find(|o| &o.name == name);
        let (given, from): (Option<&Yaml>, &Arc<Path>) = match set {
            Some(o) => (Some(&o.value), &o.source),
            None => (decl.default.as_ref(), file),
        };
        let Some(given) = given else {
            if decl.required {
                diags.push(match includer {
                    None => Diagnostic::new(
                        file,
                        Some(*pos),
                        &path,
                        format!("parameter '{name}' is required; set it with --set {name}=VALUE"),
                    ),
                    Some(inc) => Diagnostic::new(
                        inc.file,
                        Some(inc.pos),
                        &inc.path,
                        format!(
                            "fragment '{}' needs parameter '{name}'; set it in with: {{{name}: VALUE}}",
                            inc.fragment
                        ),
                    ),
                });
            }
            continue;
        };
        let where_ = match set {
            Some(o) => o.path.clone(),
            None => format!("{path}.default"),
        };
        // A `--set` value has no place in a file to point at.
        let at = match set {
            Some(Override { pos: None, .. }) => None,
            _ => Some(given.pos),
        };
        // A secret's value is not repeated in its errors.
        let hide = |message: String| match decl.secret {
            true => message.replace(&given.scalar_text(), crate::plan::secrets::MASK),
            false => message,
        };
        match coerce(decl.ty, given) {
            Ok(value) => {
                if let Some(choices) = &decl.choices {
                    let allowed: Vec<Json> = choices
                        .iter()
                        .filter_map(|c| coerce(decl.ty, c).ok())
                        .collect();
                    if !allowed.contains(&value) {
                        let list: Vec<String> = choices.iter().map(Yaml::scalar_text).collect();
                        diags.push(Diagnostic::new(
                            from,
                            at,
                            where_,
                            hide(format!(
                                "'{}' is not one of the allowed values: {}{}",
                                given.scalar_text(),
                                list.join(", "),
                                decl.because
                                    .as_deref()
                                    .map(|why| format!(" — {why}"))
                                    .unwrap_or_default()
                            )),
                        ));
                        continue;
                    }
                }
                if decl.secret {
                    let short = |v: &Json| {
                        v.as_str()
                            .is_some_and(|s| s.chars().count() < crate::plan::secrets::SHORTEST)
                    };
                    let too_short = match &value {
                        Json::Array(items) => items.iter().any(short),
                        other => short(other),
                    };
                    if too_short {
                        diags.push(Diagnostic::new(
                            from,
                            at,
                            where_,
                            format!(
                                "the secret '{name}' is shorter than {} characters: too short to keep out of what quiver prints; use the real credential",
                                crate::plan::secrets::SHORTEST
                            ),
                        ));
                        continue;
                    }
                    secrets.add(&value);
                }
                values.insert(name.clone(), value);
            }
            Err(message) => diags.push(Diagnostic::new(from, at, where_, hide(message))),
        }
    }

    for o in overrides {
        if !decls.contains_key(&o.name) {
            diags.push(Diagnostic::new(
                &o.source,
                o.pos,
                &o.path,
                format!(
                    "there is no parameter '{}'{}",
                    o.name,
                    did_you_mean(&o.name, decls.keys().map(String::as_str))
                ),
            ));
        }
    }
    values
}

fn check_decl(
    file: &Arc<Path>,
    path: &str,
    name: &str,
    decl: &ParamDecl,
    pos: Pos,
    diags: &mut Diagnostics,
) {
    if decl.required && decl.default.is_some() {
        diags.push(Diagnostic::new(
            file,
            Some(pos),
            path,
            format!("parameter '{name}' is required and has a default; remove one of the two"),
        ));
    }
    if let Some(choices) = &decl.choices {
        for c in choices {
            if let Err(e) = coerce(decl.ty, c) {
                diags.push(Diagnostic::new(
                    file,
                    Some(c.pos),
                    format!("{path}.choices"),
                    e,
                ));
            }
        }
    }
}

/// Checks `value` against a declared type, converting where the meaning is plain
/// (an int where a float is expected, `FPT,VNM` where a list is expected).
pub fn coerce(ty: ParamType, value: &Yaml) -> Result<Json, String> {
    let wrong = || {
        format!(
            "expected {ty}, found {} '{}'",
            value.kind(),
            value.scalar_text()
        )
    };
    match (ty, &value.value) {
        (ParamType::String, Value::Str(s)) => Ok(Json::String(s.clone())),
        (ParamType::String, Value::Int(_) | Value::Float(_) | Value::Bool(_)) => {
            Ok(Json::String(value.scalar_text()))
        }
        (ParamType::Int, Value::Int(i)) => Ok(Json::from(*i)),
        (ParamType::Float, Value::Int(i)) => Ok(Json::from(*i as f64)),
        (ParamType::Float, Value::Float(f)) => Ok(Json::from(*f)),
        (ParamType::Bool, Value::Bool(b)) => Ok(Json::Bool(*b)),
        (ParamType::Date, Value::Str(s)) => check_date(s)
            .map(|()| Json::String(s.clone()))
            .map_err(|e| format!("'{s}' is not a date: {e}")),
        (ParamType::List, Value::Seq(items)) => {
            Ok(Json::Array(items.iter().map(Yaml::to_json).collect()))
        }
        (ParamType::List, Value::Str(s)) => Ok(Json::Array(
            s.split(',')
                .map(|p| Json::String(p.trim().to_string()))
                .filter(|p| p != "")
                .collect(),
        )),
        _ => Err(wrong()),
    }
}

/// Accepts `YYYY-MM-DD` naming a real calendar day.
pub fn check_date(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err("write dates as YYYY-MM-DD".into());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err("write dates as YYYY-MM-DD".into());
    }
    let (y, m, d): (i32, u32, u32) = match (y.parse(), m.parse(), d.parse()) {
        (Ok(y), Ok(m), Ok(d)) => (y, m, d),
        _ => return Err("write dates as YYYY-MM-DD".into()),
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(format!("there is no month {m}")),
    };
    if d == 0 || d > days {
        return Err(format!("month {m} of {y} has {days} days"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse;

    #[test]
    fn coercion_keeps_types() {
        let list = parse("[FPT, VNM]").unwrap();
        assert_eq!(
            coerce(ParamType::List, &list).unwrap(),
            serde_json::json!(["FPT", "VNM"])
        );
        let csv = parse("FPT, VNM").unwrap();
        assert_eq!(
            coerce(ParamType::List, &csv).unwrap(),
            serde_json::json!(["FPT", "VNM"])
        );
        assert_eq!(
            coerce(ParamType::Float, &parse("3").unwrap()).unwrap(),
            serde_json::json!(3.0)
        );
        assert!(coerce(ParamType::Int, &parse("x").unwrap()).is_err());
        assert!(
            coerce(ParamType::Date, &parse("2026-02-30").unwrap())
                .unwrap_err()
                .contains("28 days")
        );
        assert!(coerce(ParamType::Date, &parse("2024-02-29").unwrap()).is_ok());
    }
}
