//! The tree builder behind [`super::parse`]: parser events in, a positioned
//! tree out, within the document limits, and parser errors explained.

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, MarkedEventReceiver};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use super::{MAX_DEPTH, MAX_NODES, Pos, SyntaxError, Value, Yaml, resolve_plain};

/// A list or mapping being built.
struct Open {
    node: Yaml,
    /// For a mapping, a key waiting for its value.
    key: Option<Yaml>,
    anchor: usize,
    /// Where the parser began it (a block mapping's `node.pos` moves to its
    /// first key): a `[` or `{` here makes it a flow collection.
    start: Pos,
    /// [`Builder::nodes`] before it began, to know its size when it ends.
    nodes_before: usize,
    /// A mapping's scalar keys so far, to find a duplicate without comparing
    /// every pair of keys.
    keys: HashSet<(u8, String)>,
}

/// Builds the tree from parser events.
pub(super) struct Builder<'t> {
    text: &'t str,
    stack: Vec<Open>,
    /// Anchored values, and their size in nodes, for their aliases to copy.
    anchors: HashMap<usize, (Yaml, usize)>,
    /// Nodes in the tree, each alias counting as the nodes it copied.
    nodes: usize,
    /// Nodes copied into `anchors`.
    kept: usize,
    pub(super) root: Option<Yaml>,
    pub(super) error: Option<SyntaxError>,
}

impl<'t> Builder<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        Builder {
            text,
            stack: Vec::new(),
            anchors: HashMap::new(),
            nodes: 0,
            kept: 0,
            root: None,
            error: None,
        }
    }

    /// Records the first error at `pos`, naming the place the next value goes.
    fn fail(&mut self, pos: Pos, message: String) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                pos,
                path: self.path_here(),
                message,
                syntax: false,
            });
        }
    }

    /// Whether `n` more nodes fit in [`MAX_NODES`]; when not, records why,
    /// blaming the alias at `pos` when `alias` is set.
    fn fits(&mut self, n: usize, pos: Pos, alias: bool) -> bool {
        if self.nodes + self.kept + n <= MAX_NODES {
            return true;
        }
        let limit = thousands(MAX_NODES);
        let message = if alias {
            let name =
                alias_name(self.text, pos).map_or("an alias".into(), |a| format!("alias '{a}'"));
            format!(
                "expanding {name} ({} nodes) would take the document past {limit} YAML nodes, \
                 the limit for a YAML file quiver reads; aliases of values that hold aliases \
                 multiply — write the values out, or share nodes with a fragment (`use:`)",
                thousands(n)
            )
        } else {
            format!(
                "the document holds more than {limit} YAML nodes (aliases counted as the nodes \
                 they copy), the limit for a YAML file quiver reads; keep data in files that \
                 operators read, or split the pipeline into fragments (`use:`)"
            )
        };
        self.fail(pos, message);
        false
    }

    fn open(&mut self, value: Value, anchor: usize, pos: Pos) {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(pos, too_deep());
            return;
        }
        if !self.fits(1, pos, false) {
            return;
        }
        self.stack.push(Open {
            node: Yaml::new(value, pos),
            key: None,
            anchor,
            start: pos,
            nodes_before: self.nodes,
            keys: HashSet::new(),
        });
        self.nodes += 1;
    }

    /// Adds a finished value of `size` nodes (already counted) to the open
    /// collection, or makes it the document.
    fn push_value(&mut self, node: Yaml, anchor: usize, size: usize) {
        if anchor > 0 {
            if !self.fits(size, node.pos, false) {
                return;
            }
            self.kept += size;
            self.anchors.insert(anchor, (node.clone(), size));
        }
        let Some(open) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        match &mut open.node.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match open.key.take() {
                None => {
                    // The parser marks a block mapping at its first key's ':'
                    // (the scanner only knows a key was a key once it sees the
                    // colon); a mapping starts at its first key.
                    if entries.is_empty()
                        && (node.pos.line, node.pos.col) < (open.node.pos.line, open.node.pos.col)
                    {
                        open.node.pos = node.pos;
                    }
                    open.key = Some(node);
                }
                Some(key) => {
                    let id = key_id(&key.value);
                    let duplicate = match &id {
                        Some(id) => open.keys.contains(id),
                        None => entries.iter().any(|(k, _)| k.value == key.value),
                    };
                    if duplicate {
                        let message =
                            format!("duplicate key '{}' in this mapping", key.scalar_text());
                        let pos = key.pos;
                        // Still pending, so that the path ends with the key.
                        open.key = Some(key);
                        self.fail(pos, message);
                        return;
                    }
                    if let Some(id) = id {
                        open.keys.insert(id);
                    }
                    entries.push((key, node));
                }
            },
            _ => unreachable!("only collections are pushed on the stack"),
        }
    }

    /// The YAML path of the place the next value goes, e.g. `nodes.prices`.
    fn path_here(&self) -> String {
        let mut path = String::new();
        for open in &self.stack {
            let seg = match (&open.node.value, &open.key) {
                (Value::Map(_), Some(k)) => k.scalar_text(),
                (Value::Seq(items), _) => format!("[{}]", items.len()),
                _ => continue,
            };
            if !path.is_empty() && !seg.starts_with('[') {
                path.push('.');
            }
            path.push_str(&seg);
        }
        path
    }

    /// A parser error, pointed at the bracket the parser was still looking
    /// to close when the file ended, rather than at the end of the file.
    pub(super) fn explain(&self, e: &ScanError) -> SyntaxError {
        let pos = Pos::from(*e.marker());
        let mut err = SyntaxError {
            pos,
            path: String::new(),
            message: e.info().to_string(),
            syntax: true,
        };
        if e.info() == "while scanning a quoted scalar, found unexpected end of stream" {
            // The scanner points at the opening quote already.
            let quote = char_at(self.text, pos).unwrap_or('"');
            let end = pos_at(self.text, self.text.len());
            err.message = format!(
                "this quoted string is never closed: the file ends at {end} without its closing {quote}"
            );
            return err;
        }
        if e.info() == "recursion limit exceeded" {
            // The scanner looks ahead along a line for a key's ':', and gives
            // up at 256 brackets deep, perhaps before we see the 65th.
            return SyntaxError {
                path: self.path_here(),
                message: too_deep(),
                syntax: false,
                ..err
            };
        }
        let flow = self
            .stack
            .iter()
            .rev()
            .find_map(|o| match char_at(self.text, o.start) {
                Some(c @ ('[' | '{')) => Some((c, o.start)),
                _ => None,
            });
        let Some((bracket, start)) = flow else {
            return err;
        };
        let close = if bracket == '[' { ']' } else { '}' };
        if at_end(self.text, pos) {
            err.pos = start;
            err.message = format!(
                "this '{bracket}' is never closed: the file ends at {pos} without its '{close}'"
            );
        } else if start.line < pos.line {
            err.message = format!(
                "{}; the '{bracket}' opened at {start} is still open here — is its '{close}' missing?",
                err.message
            );
        }
        err
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from(mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                if !self.fits(1, pos, false) {
                    return;
                }
                self.nodes += 1;
                let value = if style == TScalarStyle::Plain {
                    resolve_plain(text)
                } else {
                    Value::Str(text)
                };
                self.push_value(Yaml::new(value, pos), anchor, 1);
            }
            Event::SequenceStart(anchor, _) => self.open(Value::Seq(Vec::new()), anchor, pos),
            Event::MappingStart(anchor, _) => self.open(Value::Map(Vec::new()), anchor, pos),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(open) = self.stack.pop() {
                    let size = self.nodes - open.nodes_before;
                    self.push_value(open.node, open.anchor, size);
                }
            }
            Event::Alias(id) => {
                let Some(size) = self.anchors.get(&id).map(|(_, size)| *size) else {
                    self.error.get_or_insert(SyntaxError {
                        pos,
                        path: String::new(),
                        message: "alias to an unknown anchor".into(),
                        syntax: true,
                    });
                    return;
                };
                if !self.fits(size, pos, true) {
                    return;
                }
                self.nodes += size;
                let node = Yaml {
                    pos,
                    ..self.anchors[&id].0.clone()
                };
                self.push_value(node, 0, size);
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }
}

fn too_deep() -> String {
    format!(
        "lists and mappings nest more than {MAX_DEPTH} deep here, the limit for a YAML file \
         quiver reads; flatten this value"
    )
}

/// A scalar key as something to hash: its kind and text decide equality as
/// `Value`'s `==` does. Floats (NaN is not equal to itself) and collections
/// are compared the slow way.
fn key_id(value: &Value) -> Option<(u8, String)> {
    match value {
        Value::Null => Some((0, String::new())),
        Value::Bool(b) => Some((1, b.to_string())),
        Value::Int(i) => Some((2, i.to_string())),
        Value::Str(s) => Some((3, s.clone())),
        Value::Float(_) | Value::Seq(_) | Value::Map(_) => None,
    }
}

/// The byte offset of `pos` in `text` (columns count characters), or the
/// end of the text for a position past it.
fn offset(text: &str, pos: Pos) -> usize {
    let line_start = match pos.line {
        0 | 1 => 0,
        n => match text.match_indices('\n').nth(n as usize - 2) {
            Some((i, _)) => i + 1,
            None => return text.len(),
        },
    };
    let rest = &text[line_start..];
    let col = rest
        .char_indices()
        .nth(pos.col.saturating_sub(1) as usize)
        .map_or(rest.len(), |(i, _)| i);
    line_start + col
}

/// The character at `pos`.
fn char_at(text: &str, pos: Pos) -> Option<char> {
    text[offset(text, pos)..].chars().next()
}

/// The position of byte `offset` (or of the character it falls in).
pub(super) fn pos_at(text: &str, mut offset: usize) -> Pos {
    offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        line: before.matches('\n').count() as u32 + 1,
        col: before[line_start..].chars().count() as u32 + 1,
    }
}

/// Whether nothing but blank lines and comments follows `pos`.
fn at_end(text: &str, pos: Pos) -> bool {
    text[offset(text, pos)..].lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    })
}

/// `*name`, as written at `pos`.
fn alias_name(text: &str, pos: Pos) -> Option<String> {
    let name: String = text[offset(text, pos)..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | '[' | ']' | '{' | '}'))
        .collect();
    (name.len() > 1 && name.starts_with('*')).then_some(name)
}

/// `250000` as `250,000`.
pub(super) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_BYTES, parse};
    use super::*;

    /// Ten aliases a level, ten levels: 10^10 nodes if expanded.
    fn bomb() -> String {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        text + "nodes: *a9\n"
    }

    #[test]
    fn an_alias_bomb_is_refused_at_the_alias_that_trips_the_limit() {
        let err = parse(&bomb()).unwrap_err();
        // a0..a4 hold 11, 111, 1,111, 11,111 and 111,111 nodes, each built
        // once and kept once for its aliases: 246,916 nodes by the end of
        // line 5. The first alias on line 6 would copy a4 again.
        assert!(!err.syntax);
        assert_eq!(err.pos, Pos { line: 6, col: 10 });
        assert_eq!(err.path, "a5[0]");
        assert!(
            err.message.starts_with(
                "expanding alias '*a4' (111,111 nodes) would take the document past 250,000 YAML nodes"
            ),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_document_of_too_many_plain_nodes_is_refused() {
        let text = format!("[{}]", vec!["0"; MAX_NODES].join(","));
        let err = parse(&text).unwrap_err();
        assert_eq!(err.path, format!("[{}]", MAX_NODES - 1));
        assert!(
            err.message
                .starts_with("the document holds more than 250,000 YAML nodes"),
            "{}",
            err.message
        );
    }

    #[test]
    fn nesting_is_limited_in_flow_and_block_style() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        parse(&ok).unwrap();
        for text in [
            format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1)),
            "[".repeat(100_000),
            "- ".repeat(100_000),
            (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect(),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(
                err.message
                    .starts_with("lists and mappings nest more than 64 deep"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn an_unclosed_bracket_is_reported_where_it_opens() {
        let err = parse("a: 1\nb:\n  with: [unclosed\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 9 });
        assert_eq!(
            err.message,
            "this '[' is never closed: the file ends at 4:1 without its ']'"
        );
        let err = parse("a: {b: [1, 2], c: 3\n\n# the end\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 1, col: 4 });
        assert!(
            err.message.starts_with("this '{' is never closed"),
            "{err:?}"
        );
        let err = parse("a: 1\nb: 'unclosed\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, col: 4 });
        assert_eq!(
            err.message,
            "this quoted string is never closed: the file ends at 3:1 without its closing '"
        );
    }

    #[test]
    fn an_error_inside_an_earlier_bracket_names_it() {
        let err = parse("a: {b: 1,\n  c: 'x' 'y'}\nd: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2, "{err:?}");
        assert!(
            err.message
                .ends_with("the '{' opened at 1:4 is still open here — is its '}' missing?"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_document_over_the_size_limit_is_refused_where_it_crosses() {
        let line = format!("{}\n", "x".repeat(1023));
        let text = line.repeat(MAX_BYTES / 1024) + "y";
        let err = parse(&text).unwrap_err();
        assert_eq!(err.pos, Pos { line: 4097, col: 1 });
        assert!(err.message.contains("longer than 4,194,304 bytes (4 MiB)"));
    }

    #[test]
    fn duplicate_keys_compare_kind_and_text() {
        parse("1: a\n'1': b\n1.0: c\n~: d\nnull2: e\n").unwrap();
        let err = parse("x: 1\n1.5: a\ny: 2\n1.5: b\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 4, col: 1 });
        assert_eq!(err.message, "duplicate key '1.5' in this mapping");
    }

    #[test]
    fn helpers() {
        assert_eq!(thousands(250_000), "250,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        let text = "ab\ncé[d\n";
        assert_eq!(char_at(text, Pos { line: 2, col: 3 }), Some('['));
        assert_eq!(pos_at(text, 6), Pos { line: 2, col: 3 });
        assert!(at_end(text, Pos { line: 3, col: 1 }));
        assert!(!at_end(text, Pos { line: 2, col: 1 }));
    }
}
