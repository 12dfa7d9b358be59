//! Resolving references between node instances, once every node is
//! expanded: `name`, `name[KEY]`, `name[*]`, and fragment inputs bound to
//! what the including node passed.

use super::{Entry, Expander, Target};
use crate::diag::did_you_mean;

impl Expander<'_> {
    /// Resolves every pending reference.
    pub fn resolve_refs(&mut self) {
        for d in 0..self.decls.len() {
            for i in 0..self.decls[d].inputs.len() {
                let Target::Pending { text, ns } = &self.decls[d].inputs[i].target else {
                    continue;
                };
                let (text, ns) = (text.clone(), *ns);
                let target = match self.lookup(&text, ns) {
                    Ok(t) => t,
                    Err(message) => {
                        let o = self.decls[d].inputs[i].origin.clone();
                        self.error(&o.file, o.pos, o.path, message);
                        Target::Broken
                    }
                };
                self.decls[d].inputs[i].target = target;
            }
        }
    }

    fn lookup(&self, text: &str, ns: usize) -> Result<Target, String> {
        let (base, selector) = parse_ref(text);
        let space = &self.namespaces[ns];
        if let Some(entry) = space.entries.get(base) {
            return select(base, entry.clone().into(), selector);
        }
        if let Some(bound) = space.bindings.get(base) {
            let target = match bound {
                Target::Pending { text, ns } => self.lookup(text, *ns)?,
                other => other.clone(),
            };
            // A bound input stands for exactly what the including node passed.
            return match selector {
                None => Ok(target),
                Some(_) => select(base, target, selector),
            };
        }
        let names = space
            .entries
            .keys()
            .chain(space.bindings.keys())
            .map(String::as_str);
        Err(format!(
            "unknown node '{base}'{}",
            did_you_mean(base, names)
        ))
    }
}

impl From<Entry> for Target {
    fn from(e: Entry) -> Self {
        match e {
            Entry::One(id) => Target::One(id),
            Entry::FanOut { var, members } => Target::All { key: var, members },
            Entry::Broken => Target::Broken,
        }
    }
}

/// Applies `[KEY]` or `[*]` to what a name stands for.
fn select(base: &str, target: Target, selector: Option<&str>) -> Result<Target, String> {
    match (target, selector) {
        (Target::All { members, .. }, None) => Err(format!(
            "'{base}' is a fan-out of {} nodes; write '{base}[*]' for all of them or '{base}[KEY]' for one",
            members.len()
        )),
        (Target::All { key, members }, Some("*")) => Ok(Target::All { key, members }),
        (Target::All { members, .. }, Some(k)) => match members.iter().find(|(m, _)| m == k) {
            Some((_, id)) => Ok(Target::One(*id)),
            None => {
                let hint = did_you_mean(k, members.iter().map(|(m, _)| m.as_str()));
                Err(format!("'{base}' has no instance '{k}'{hint}"))
            }
        },
        (Target::One(_), Some(_)) => Err(format!(
            "'{base}' is a single node, not a fan-out; refer to it as '{base}'"
        )),
        (t, _) => Ok(t),
    }
}

/// Splits `name[key]` into its name and selector.
pub fn parse_ref(text: &str) -> (&str, Option<&str>) {
    let text = text.trim();
    match text.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((base, key)) => (base.trim(), Some(key.trim())),
        None => (text, None),
    }
}
