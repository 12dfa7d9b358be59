//! Secret values: parameters declared `secret: true` and every value read
//! with `${env:NAME}`. The plan keeps them so that everything quiver writes
//! (plans in every format, run reports, log lines, error messages) can show
//! `‹secret›` in their place; the cache keeps only their hashes.

use serde_json::Value;

/// What a secret value is shown as.
pub const MASK: &str = "‹secret›";

/// Values shorter than this are not masked: masking `1` or `on` would mask
/// every such text in a message. A parameter declared secret must be at
/// least this long (a validation error says so); an environment variable
/// this short (`DEBUG=1`) is taken for a setting, not a credential.
pub const SHORTEST: usize = 4;

/// The secret values of a plan, longest first (so that a secret containing
/// another is masked whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Adds the strings of `value` (each element of a list).
    pub fn add(&mut self, value: &Value) {
        match value {
            Value::String(s) if s.chars().count() >= SHORTEST => {
                if !self.0.contains(s) {
                    self.0.push(s.clone());
                    self.0.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.add(v)),
            Value::Null | Value::String(_) => {}
            other => self.add(&Value::String(other.to_string())),
        }
    }

    /// Adds every secret of `other`.
    pub fn merge(&mut self, other: &Secrets) {
        for s in &other.0 {
            self.add(&Value::String(s.clone()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every secret, as written or escaped for JSON or HTML,
    /// replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.0 {
            for form in forms(secret) {
                if out.contains(form.as_str()) {
                    out = out.replace(form.as_str(), MASK);
                }
            }
        }
        out
    }

    /// `value` with every string holding a secret masked.
    pub fn redact_json(&self, value: &Value) -> Value {
        self.map_json(value, &|s| self.redact(s))
    }

    /// `value` with every string holding a secret replaced by a hash of
    /// it: what the cache stores, so that a changed secret is still seen
    /// as a change without the value being written down.
    pub fn hash_json(&self, value: &Value) -> Value {
        self.map_json(value, &|s| {
            let mut out = s.to_string();
            for secret in &self.0 {
                if out.contains(secret.as_str()) {
                    let hash = blake3::hash(secret.as_bytes()).to_hex();
                    out = out.replace(secret.as_str(), &format!("‹secret {}›", &hash[..12]));
                }
            }
            out
        })
    }

    fn map_json(&self, value: &Value, f: &dyn Fn(&str) -> String) -> Value {
        if self.0.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(f(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.map_json(v, f)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (f(k), self.map_json(v, f)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// A secret as it may appear in output: as is, inside a JSON string, and
/// inside HTML or XML text.
fn forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).expect("strings serialize");
    let json = json[1..json.len() - 1].to_string();
    let html = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    let script = json.replace('<', "\\u003c");
    let mut forms = vec![secret.to_string()];
    for f in [json, html, script] {
        if !forms.contains(&f) {
            forms.push(f);
        }
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_as_written_and_escaped() {
        let mut s = Secrets::default();
        s.add(&json!("p\"a<ss"));
        s.add(&json!(["tok1", "token-123", "on"]));
        assert_eq!(
            s.redact("url?k=token-123&t=tok1&x=on"),
            "url?k=‹secret›&t=‹secret›&x=on"
        );
        assert_eq!(s.redact(r#"{"q":"p\"a<ss"}"#), r#"{"q":"‹secret›"}"#);
        assert_eq!(s.redact("<b>p&quot;a&lt;ss</b>"), "<b>‹secret›</b>");
        let v = s.redact_json(&json!({"h": ["Bearer token-123"], "n": 3}));
        assert_eq!(v, json!({"h": ["Bearer ‹secret›"], "n": 3}));
    }

    #[test]
    fn the_cache_sees_a_changed_secret_without_its_value() {
        let mut a = Secrets::default();
        a.add(&json!("one-secret"));
        let mut b = Secrets::default();
        b.add(&json!("two-secret"));
        let (ha, hb) = (
            a.hash_json(&json!({"url": "x?k=one-secret"})),
            b.hash_json(&json!({"url": "x?k=two-secret"})),
        );
        assert_ne!(ha, hb);
        assert!(!ha.to_string().contains("one-secret"), "{ha}");
    }
}
