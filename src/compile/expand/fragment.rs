//! Fragments: a node with `use: FILE` is replaced by the fragment's nodes,
//! named under the node (`whale.footprint`), with the fragment's parameters
//! set by the node's `with:` and its inputs bound to the node's `inputs:`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DeclInput, Entry, Expander, Namespace, Step, Target};
use crate::compile::interp::{self, Scope};
use crate::compile::params::{self, Includer, Override, Params};
use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::spec::de::from_yaml;
use crate::spec::{FragmentSpec, Pos, Value, Yaml};

impl Expander<'_> {
    /// Expands the node at `step`, which uses the fragment file `fragment`;
    /// returns what the fragment's output node stands for.
    pub(super) fn expand_fragment(&mut self, step: Step, fragment: &str) -> Option<Entry> {
        let Step { file, path, .. } = step;
        let use_pos = step.pos_of("use");
        let frag_path = normalise(&file.parent().unwrap_or(Path::new("")).join(fragment));
        if self.include_stack.contains(&frag_path) {
            let mut chain: Vec<String> = self
                .include_stack
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            chain.push(frag_path.display().to_string());
            self.error(
                file,
                use_pos,
                format!("{path}.use"),
                format!(
                    "fragments include each other in a cycle: {}",
                    chain.join(" → ")
                ),
            );
            return None;
        }
        let doc = self.load_fragment(file, &frag_path, use_pos, path)?;
        let frag_file: Arc<Path> = Arc::from(frag_path.as_path());
        let fspec = match from_yaml::<FragmentSpec>(&doc, "") {
            Ok(s) => s,
            Err(e) => {
                self.diags.push(Diagnostic::new(
                    &frag_file,
                    e.pos,
                    e.path.unwrap_or_default(),
                    e.message,
                ));
                return None;
            }
        };

        let fparams = self.fragment_params(step, &frag_file, &fspec);
        // The fragment's inputs are bound to what this node passes.
        let child = self.namespaces.len();
        self.namespaces.push(Namespace::default());
        let bindings = self.bind_inputs(step, &fspec);
        // Without its parameters the fragment's nodes would only report a
        // cascade of unresolved references.
        let mut fparams = fparams?;
        interp::env_params(&doc, &mut fparams, &mut self.secrets);
        self.namespaces[child].bindings = bindings;

        self.include_stack.push(frag_path.clone());
        let fscope = Scope::new(&fparams);
        let prefix = format!("{}.", step.name);
        self.expand_nodes(&frag_file, &fspec.nodes, &prefix, &fscope, child);
        self.include_stack.pop();

        let output = self.namespaces[child].entries.get(&fspec.output).cloned();
        if output.is_none() {
            let pos = doc.get("output").map_or(doc.pos, |o| o.pos);
            let names: Vec<&str> = self.namespaces[child]
                .entries
                .keys()
                .map(String::as_str)
                .collect();
            let hint = did_you_mean(&fspec.output, names);
            self.error(
                &frag_file,
                pos,
                "output",
                format!(
                    "output '{}' is not a node of this fragment{hint}",
                    fspec.output
                ),
            );
        }
        output
    }

    /// The fragment's parameters, from the including node's `with:` read in
    /// the including scope; `None` when any is wrong (reported).
    fn fragment_params(
        &mut self,
        step: Step,
        frag_file: &Arc<Path>,
        fspec: &FragmentSpec,
    ) -> Option<Params> {
        let Step { file, path, .. } = step;
        let mut overrides = Vec::new();
        let mut ok = true;
        if let Some(with) = &step.spec.with {
            match self.interpolate(file, with, &format!("{path}.with"), step.scope) {
                Some(with) => match with.as_map() {
                    Some(entries) => overrides.extend(entries.iter().map(|(k, v)| Override {
                        name: k.scalar_text(),
                        path: format!("{path}.with.{}", k.scalar_text()),
                        pos: Some(k.pos),
                        value: v.clone(),
                        source: file.clone(),
                    })),
                    None => {
                        self.error(
                            file,
                            with.pos,
                            format!("{path}.with"),
                            "a fragment's with: is a mapping of its parameter names to values",
                        );
                        ok = false;
                    }
                },
                None => ok = false,
            }
        }
        let includer = Includer {
            file,
            pos: step.pos_of("with"),
            path: match step.spec.with {
                Some(_) => format!("{path}.with"),
                None => path.to_string(),
            },
            fragment: &fspec.fragment,
        };
        let mut param_diags = Diagnostics::default();
        let fparams = params::resolve(
            frag_file,
            "params",
            fspec.params.as_ref(),
            &overrides,
            Some(&includer),
            &mut self.secrets,
            &mut param_diags,
        );
        ok &= param_diags.is_empty();
        for d in param_diags.0 {
            self.diags.push(d);
        }
        ok.then_some(fparams)
    }

    /// The fragment's inputs, bound to the including node's `inputs:`;
    /// inputs the fragment lacks or needs are reported.
    fn bind_inputs(&mut self, step: Step, fspec: &FragmentSpec) -> HashMap<String, Target> {
        let Step { file, path, .. } = step;
        let bound: Vec<DeclInput> = match &step.spec.inputs {
            Some(
                inputs @ Yaml {
                    value: Value::Map(_),
                    ..
                },
            ) => self.expand_inputs(step, inputs),
            Some(Yaml {
                value: Value::Null, ..
            })
            | None => Vec::new(),
            Some(other) => {
                self.error(
                    file,
                    other.pos,
                    format!("{path}.inputs"),
                    "a fragment's inputs are a map of its input names to references",
                );
                Vec::new()
            }
        };
        for input in &bound {
            if !fspec.inputs.contains(&input.name) {
                let help = match crate::diag::suggest(
                    &input.name,
                    fspec.inputs.iter().map(String::as_str),
                ) {
                    Some(s) => format!(" — did you mean '{s}'?"),
                    None if fspec.inputs.is_empty() => "; it takes no inputs".to_string(),
                    None => format!("; it takes: {}", fspec.inputs.join(", ")),
                };
                self.error(
                    file,
                    input.origin.pos,
                    &input.origin.path,
                    format!(
                        "fragment '{}' has no input '{}'{help}",
                        fspec.fragment, input.name
                    ),
                );
            }
        }
        let inputs_pos = step.pos_of("inputs");
        for wanted in &fspec.inputs {
            if !bound.iter().any(|b| &b.name == wanted) {
                self.error(file, inputs_pos, format!("{path}.inputs"), format!("fragment '{}' needs input '{wanted}'; pass it with inputs: {{{wanted}: NODE}}", fspec.fragment));
            }
        }
        let mut bindings: HashMap<String, Target> =
            bound.into_iter().map(|b| (b.name, b.target)).collect();
        for wanted in &fspec.inputs {
            // Reported above; the fragment's nodes reading it are not wrong.
            bindings.entry(wanted.clone()).or_insert(Target::Broken);
        }
        bindings
    }

    fn load_fragment(
        &mut self,
        file: &Arc<Path>,
        frag_path: &Path,
        pos: Pos,
        path: &str,
    ) -> Option<Arc<Yaml>> {
        if let Some(cached) = self.fragments.get(frag_path) {
            return cached.clone();
        }
        let loaded = match crate::spec::yaml::read_file(frag_path) {
            Err(e) => {
                self.error(
                    file,
                    pos,
                    format!("{path}.use"),
                    format!("cannot read fragment {}: {e}", frag_path.display()),
                );
                None
            }
            Ok(text) => match crate::spec::yaml::parse(&text) {
                Ok(doc) => Some(Arc::new(doc)),
                Err(e) => {
                    let frag_file: Arc<Path> = Arc::from(frag_path);
                    self.diags.push(crate::compile::syntax_error(&frag_file, e));
                    None
                }
            },
        };
        self.fragments
            .insert(frag_path.to_path_buf(), loaded.clone());
        loaded
    }
}

/// `path` with `.` and `dir/..` removed, so a fragment reached by two
/// spellings is one fragment (and an include cycle through `..` is found).
fn normalise(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
