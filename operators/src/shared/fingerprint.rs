//! What a file source's output depends on besides its parameters: the
//! files it may read, each with its size and modification time. The cache
//! makes this part of a node's key, so an edited, added or removed file
//! means a new key and a fresh read.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::OpError;

/// One line per file that `path` (a file, a folder or a glob) may read:
/// its path, size and modification time, in name order. For a glob, every
/// file under the folder before its first wildcard counts: more than the
/// glob matches, never less. Sinks' temporary files are left out, and a
/// path that does not exist gives a text of its own (the read then fails
/// with its own message).
pub fn files(path: &str) -> Result<String, OpError> {
    let root = glob_root(path);
    let mut found = Vec::new();
    if root.is_file() {
        found.push(root.clone());
    } else if root.is_dir() {
        walk(&root, &mut found)?;
    } else {
        return Ok(format!("missing {path}\n"));
    }
    found.sort();
    let mut out = String::new();
    for file in found {
        let meta = std::fs::metadata(&file)
            .map_err(|e| OpError::io(format!("cannot read '{}'", file.display()), e))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        out.push_str(&format!("{}\t{}\t{modified}\n", file.display(), meta.len()));
    }
    Ok(out)
}

/// The part of `path` before its first wildcard, up to the last `/`.
fn glob_root(path: &str) -> PathBuf {
    match path.find(['*', '?', '[', '{']) {
        None => PathBuf::from(path),
        Some(i) => match path[..i].rfind('/') {
            Some(slash) => PathBuf::from(&path[..=slash]),
            None => PathBuf::from("."),
        },
    }
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), OpError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| OpError::io(format!("cannot list '{}'", dir.display()), e))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| OpError::io(format!("cannot list '{}'", dir.display()), e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| OpError::io(format!("cannot read '{}'", path.display()), e))?;
        if kind.is_dir() {
            walk(&path, found)?;
        } else if !entry.file_name().to_string_lossy().contains(".tmp-") {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_counts_every_file_under_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        std::fs::write(dir.path().join("a.csv"), "x\n1\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.csv"), "x\n2\n").unwrap();
        std::fs::write(dir.path().join("c.csv.tmp-1-2"), "partial").unwrap();

        let text = files(&format!("{root}/*.csv")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with(&format!("{root}/a.csv\t4\t")));
        assert!(lines[1].starts_with(&format!("{root}/sub/b.csv\t4\t")));
    }

    #[test]
    fn an_edited_file_changes_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prices.csv");
        std::fs::write(&file, "x\n1\n").unwrap();
        let before = files(file.to_str().unwrap()).unwrap();
        std::fs::write(&file, "x\n1\n2\n").unwrap();
        let after = files(file.to_str().unwrap()).unwrap();
        assert_ne!(before, after);
        assert_eq!(
            files(dir.path().join("none.csv").to_str().unwrap()).unwrap(),
            format!("missing {}\n", dir.path().join("none.csv").display())
        );
    }
}
