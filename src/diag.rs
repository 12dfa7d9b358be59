//! Diagnostics: what is wrong with a pipeline, and where.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::spec::yaml::Pos;

/// One problem found in a pipeline, with the file, position and YAML path
/// of the value at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: Arc<Path>,
    pub pos: Option<Pos>,
    /// The YAML path of the value at fault, e.g. `nodes.index.inputs.ticks`.
    pub path: String,
    /// What is wrong, with the suggested fix when there is one.
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        file: &Arc<Path>,
        pos: Option<Pos>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.clone(),
            pos,
            path: path.into(),
            message: message.into(),
        }
    }

    /// The file name as written when shown to users: relative to `base` where possible.
    pub fn display_relative<'a>(&'a self, base: &'a Path) -> impl fmt::Display + 'a {
        DiagnosticDisplay { diag: self, base }
    }
}

struct DiagnosticDisplay<'a> {
    diag: &'a Diagnostic,
    base: &'a Path,
}

impl fmt::Display for DiagnosticDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.diag;
        let file: PathBuf = d
            .file
            .strip_prefix(self.base)
            .unwrap_or(&d.file)
            .to_path_buf();
        write!(f, "{}", file.display())?;
        if let Some(pos) = d.pos {
            write!(f, ":{pos}")?;
        }
        f.write_str(": error: ")?;
        if !d.path.is_empty() {
            write!(f, "{}: ", d.path)?;
        }
        f.write_str(&d.message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        DiagnosticDisplay {
            diag: self,
            base: Path::new(""),
        }
        .fmt(f)
    }
}

/// All the problems found in one compile, in source order.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diag: Diagnostic) {
        // Fan-out instances share their source: one report per place is enough.
        if !self
            .0
            .iter()
            .any(|d| d.file == diag.file && d.pos == diag.pos && d.message == diag.message)
        {
            self.0.push(diag);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| {
            (&a.file, a.pos.map(|p| (p.line, p.col)))
                .cmp(&(&b.file, b.pos.map(|p| (p.line, p.col))))
        });
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{}", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to a misspelled `name`, if one is close enough to
/// be what the user meant.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|&(d, c)| d > 0 && d <= (name.len().max(c.len()) / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `" — did you mean 'x'?"` or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    suggest(name, candidates)
        .map(|s| format!(" — did you mean '{s}'?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(suggest("tiks", ["ticks", "prices"]), Some("ticks"));
        assert_eq!(suggest("zzzz", ["ticks", "prices"]), None);
        assert_eq!(suggest("ticks", ["ticks"]), None);
    }
}
