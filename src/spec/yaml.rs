//! YAML with positions: every value remembers the line and column it came
//! from, so diagnostics can point at the exact place in the pipeline file.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use build::{Builder, pos_at, thousands};

mod build;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        Pos {
            line: m.line() as u32,
            col: m.col() as u32 + 1,
        }
    }
}

/// A YAML value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Yaml {
    pub value: Value,
    pub pos: Pos,
}

/// Any YAML value: the sections the compiler checks entry by entry.
impl schemars::JsonSchema for Yaml {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Any".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!(true)
    }
}

/// YAML values, resolved with the YAML 1.2 core schema: plain `true`, `12`,
/// `1.5`, `null` are typed; quoted scalars are always strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Yaml>),
    /// Keys in the order written.
    Map(Vec<(Yaml, Yaml)>),
}

impl Yaml {
    pub fn new(value: Value, pos: Pos) -> Self {
        Self { value, pos }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Yaml, Yaml)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Yaml> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The key node of `key` in a mapping (for pointing at a key rather than its value).
    pub fn key_pos(&self, key: &str) -> Option<Pos> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k.pos)
    }

    /// A name for the kind of value, for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Converts to JSON, dropping positions.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Yaml::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A scalar as text (for map keys and messages); collections render as YAML flow.
    pub fn scalar_text(&self) -> String {
        match &self.value {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.clone(),
            _ => self.to_json().to_string(),
        }
    }

    /// Builds a positioned value from JSON, every node at `pos`.
    pub fn from_json(json: &serde_json::Value, pos: Pos) -> Yaml {
        use serde_json::Value as J;
        let value = match json {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(items) => Value::Seq(items.iter().map(|i| Yaml::from_json(i, pos)).collect()),
            J::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            Yaml::new(Value::Str(k.clone()), pos),
                            Yaml::from_json(v, pos),
                        )
                    })
                    .collect(),
            ),
        };
        Yaml::new(value, pos)
    }
}

/// The most bytes a YAML document may hold. The largest pipeline in the
/// repository is 6 KB, the compile benchmark's 25,000 symbols 225 KB; 4 MiB
/// is room for far more, and scanning it takes milliseconds.
pub const MAX_BYTES: usize = 4 << 20;

/// The most nodes a document may build, an alias counting as every node it
/// copies and an anchored value twice (the builder keeps a copy for its
/// aliases). Counted *before* anything is copied, so a file of aliases to
/// values full of aliases ("billion laughs") is refused having built at most
/// this many, instead of exhausting memory: the alias bomb in
/// `tests/pipelines/invalid` stops in 50 ms at under 40 MB peak RSS (30 MB to
/// validate `pipelines/vn30.yaml`). Pipelines hold a few hundred nodes; the
/// compile benchmark 25,000.
pub const MAX_NODES: usize = 250_000;

/// The deepest lists and mappings may nest. Later stages (deserializing,
/// substituting parameters, dropping) recurse into values; this keeps them
/// far from the end of a thread's stack, and far beyond what a pipeline
/// needs (a dozen levels).
pub const MAX_DEPTH: usize = 64;

/// A YAML document that could not be read.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: Pos,
    /// The YAML path of the value at fault, when the document parsed far
    /// enough to know it (a duplicate key, a limit); empty otherwise.
    pub path: String,
    pub message: String,
    /// The YAML parser rejected the text, as opposed to the text being YAML
    /// that quiver refuses (a duplicate key, a document over a limit).
    pub syntax: bool,
}

/// Reads a YAML file, but no more of it than [`parse`] accepts (and a byte
/// over, so that `parse` refuses the file rather than read a truncated one).
pub fn read_file(path: &Path) -> io::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_BYTES {
        // Cut anywhere, perhaps inside a character: only the length matters now.
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    String::from_utf8(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Parses one YAML document. An empty document is `null`.
pub fn parse(text: &str) -> Result<Yaml, SyntaxError> {
    if text.len() > MAX_BYTES {
        return Err(SyntaxError {
            pos: pos_at(text, MAX_BYTES),
            path: String::new(),
            message: format!(
                "the document is longer than {} bytes ({} MiB), the limit for a YAML file \
                 quiver reads; keep data in files that operators read, not in the pipeline",
                thousands(MAX_BYTES),
                MAX_BYTES >> 20
            ),
            syntax: false,
        });
    }
    let mut builder = Builder::new(text);
    let mut parser = Parser::new_from_str(text);
    // One event at a time, so that the first problem ends the parse: an alias
    // bomb is not read one alias past the one that trips the limit.
    loop {
        let (event, mark) = parser.next_token().map_err(|e| builder.explain(&e))?;
        let last = matches!(event, Event::DocumentEnd | Event::StreamEnd);
        builder.on_event(event, mark);
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
        if last {
            break;
        }
    }
    Ok(builder
        .root
        .unwrap_or_else(|| Yaml::new(Value::Null, Pos { line: 1, col: 1 })))
}

/// Types a plain scalar by the YAML 1.2 core schema.
fn resolve_plain(text: String) -> Value {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | "+.inf" | ".Inf" | "+.Inf" | ".INF" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'_'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Int(i);
    }
    Value::Str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let doc = parse("a: 1\nb:\n  c: [x, 'y']\n").unwrap();
        assert_eq!(doc.get("a").unwrap().pos, Pos { line: 1, col: 4 });
        assert_eq!(doc.key_pos("b").unwrap(), Pos { line: 2, col: 1 });
        let c = doc.get("b").unwrap().get("c").unwrap();
        assert_eq!(c.pos, Pos { line: 3, col: 6 });
        let Value::Seq(items) = &c.value else {
            panic!("not a list")
        };
        assert_eq!(items[1].value, Value::Str("y".into()));
        assert_eq!(items[1].pos, Pos { line: 3, col: 10 });
    }

    #[test]
    fn plain_scalars_are_typed_quoted_are_strings() {
        let doc = parse("a: 12\nb: '12'\nc: 1.5\nd: true\ne: ~\nf: 2026-01-05\ng: 5m\n").unwrap();
        assert_eq!(doc.get("a").unwrap().value, Value::Int(12));
        assert_eq!(doc.get("b").unwrap().value, Value::Str("12".into()));
        assert_eq!(doc.get("c").unwrap().value, Value::Float(1.5));
        assert_eq!(doc.get("d").unwrap().value, Value::Bool(true));
        assert_eq!(doc.get("e").unwrap().value, Value::Null);
        assert_eq!(doc.get("f").unwrap().value, Value::Str("2026-01-05".into()));
        assert_eq!(doc.get("g").unwrap().value, Value::Str("5m".into()));
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_second_key() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 1 });
        assert_eq!(err.path, "a");
        assert!(err.message.contains("duplicate key 'a'"), "{}", err.message);
        let err = parse("a:\n  - {x: 1}\n  - {x: 1, y: 2, x: 3}\n").unwrap_err();
        assert_eq!(err.path, "a[1].x");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
    }

    #[test]
    fn aliases_copy_the_anchored_value() {
        let doc = parse("a: &x {k: 1}\nb: *x\n").unwrap();
        assert_eq!(doc.get("b").unwrap().get("k").unwrap().value, Value::Int(1));
    }
}
