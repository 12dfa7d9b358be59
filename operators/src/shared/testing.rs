//! Helpers the operators' unit tests share.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::{Input, Inputs, Table};

/// The names in `dir`, sorted, to check that nothing but the expected
/// files is left there.
pub(crate) fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A sink's one input: `table`, named `prices`.
pub(crate) fn one_input(table: Table) -> Inputs {
    Inputs(vec![Input {
        name: "prices".into(),
        table: Arc::new(table),
    }])
}
