//! The editor schema (`quiver schema`) against the pipelines, checked by an
//! independent JSON Schema validator (boon): every pipeline in the repo and
//! every valid fixture conforms; the invalid fixtures whose mistake is one a
//! schema can see do not, and the others (a cycle, an unknown node, a
//! parameter out of its choices) do — the schema must not refuse what only
//! the compiler can judge.

use std::path::{Path, PathBuf};

use boon::{Compiler, Draft, SchemaIndex, Schemas};
use quiver::schema;
use quiver::spec::yaml;
use serde_json::Value;

/// Invalid fixtures the schema must refuse.
const SCHEMA_ERRORS: &[&str] = &[
    "bad_duration",
    "bad_rates",
    "concurrency_zero",
    "empty_nodes",
    "input_not_text",
    "inputs_wrong_type",
    "many_errors",
    "missing_op",
    "op_and_use",
    "param_unknown_type",
    "unknown_node_field",
    "unknown_on_error",
    "unknown_operator",
    "unknown_operator_far",
    "unknown_param",
    "unknown_param_far",
    "unknown_top_field",
    "with_not_mapping",
    "wrong_param_type",
];

/// Invalid fixtures whose YAML does not parse (or repeats a key, which
/// the YAML reader refuses): nothing to validate.
const NOT_YAML: &[&str] = &[
    "duplicate_node",
    "yaml_alias_bomb",
    "yaml_syntax",
    "yaml_too_deep",
    "yaml_unclosed_list",
    "yaml_unclosed_quote",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn stem(path: &Path) -> &str {
    path.file_stem().unwrap().to_str().unwrap()
}

/// The file as JSON, as the editor's YAML server sees it.
fn instance(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    yaml::parse(&text)
        .map(|y| y.to_json())
        .map_err(|e| format!("{e:?}"))
}

struct Validator {
    schemas: Schemas,
    pipeline: SchemaIndex,
    fragment: SchemaIndex,
}

impl Validator {
    fn new() -> Self {
        let registry = quiver::operators::registry();
        let mut schemas = Schemas::new();
        let mut compiler = Compiler::new();
        compiler.set_default_draft(Draft::V7);
        let mut add = |name: &str, value: Value| {
            compiler.add_resource(name, value).unwrap();
            compiler
                .compile(name, &mut schemas)
                .unwrap_or_else(|e| panic!("the {name} schema does not compile: {e:#}"))
        };
        let pipeline = add("file:///pipeline.schema.json", schema::pipeline(registry));
        let fragment = add("file:///fragment.schema.json", schema::fragment(registry));
        Self {
            schemas,
            pipeline,
            fragment,
        }
    }

    fn check(&self, path: &Path, index: SchemaIndex) -> Result<(), String> {
        let value = instance(path)?;
        self.schemas
            .validate(&value, index)
            .map_err(|e| format!("{e}"))
    }
}

#[test]
fn the_committed_schemas_are_current() {
    let registry = quiver::operators::registry();
    for (file, value) in [
        (schema::PIPELINE_FILE, schema::pipeline(registry)),
        (schema::FRAGMENT_FILE, schema::fragment(registry)),
    ] {
        let committed = std::fs::read_to_string(root().join(file)).unwrap();
        let current = serde_json::to_string_pretty(&value).unwrap() + "\n";
        assert!(
            committed == current,
            "{file} is out of date; regenerate it: cargo run -- schema{} > {file}",
            if file == schema::FRAGMENT_FILE {
                " --fragment"
            } else {
                ""
            }
        );
    }
}

#[test]
fn repo_pipelines_and_valid_fixtures_conform() {
    let v = Validator::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    let suites = [
        ("pipelines", v.pipeline),
        ("pipelines/fragments", v.fragment),
        ("tests/pipelines/valid", v.pipeline),
        ("tests/pipelines/valid/fragments", v.fragment),
        ("tests/pipelines/invalid/fragments", v.fragment),
    ];
    for (dir, index) in suites {
        for path in yaml_files(&root().join(dir)) {
            if dir.ends_with("invalid/fragments") && stem(&path).contains("syntax") {
                continue; // A fragment whose YAML is broken on purpose.
            }
            checked += 1;
            if let Err(e) = v.check(&path, index) {
                failures.push(format!("{}: {e}", path.display()));
            }
        }
    }
    assert!(checked > 15, "only {checked} files found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn repo_pipelines_name_the_schema_in_their_first_line() {
    let suites = [
        ("pipelines", format!("../{}", schema::PIPELINE_FILE)),
        (
            "pipelines/fragments",
            format!("../../{}", schema::FRAGMENT_FILE),
        ),
    ];
    for (dir, target) in suites {
        for path in yaml_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&path).unwrap();
            let first = text.lines().next().unwrap_or_default();
            let modeline = format!("# yaml-language-server: $schema={target}");
            assert_eq!(first, modeline, "{}", path.display());
            assert!(root().join(dir).join(&target).is_file(), "{target}");
        }
    }
}

#[test]
fn invalid_fixtures_fail_the_schema_exactly_when_the_mistake_is_a_schema_one() {
    let v = Validator::new();
    let mut wrong = Vec::new();
    for path in yaml_files(&root().join("tests/pipelines/invalid")) {
        let name = stem(&path);
        if NOT_YAML.contains(&name) {
            assert!(instance(&path).is_err(), "{name} parses");
            continue;
        }
        let result = v.check(&path, v.pipeline);
        match (SCHEMA_ERRORS.contains(&name), result) {
            (true, Ok(())) => wrong.push(format!("{name}: the schema accepts it")),
            (false, Err(e)) => wrong.push(format!(
                "{name}: the schema refuses what only the compiler can judge:\n{e}"
            )),
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn a_misspelled_with_key_is_named_by_the_schema() {
    let v = Validator::new();
    let path = root().join("tests/pipelines/invalid/unknown_param.yaml");
    let error = v.check(&path, v.pipeline).unwrap_err();
    assert!(error.contains("symbl"), "{error}");
}
