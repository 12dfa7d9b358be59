//! Cache keys: a BLAKE3 hash of everything that decides a node's output —
//! its operator and the operator's version, its parameters as the operator
//! reads them (defaults filled in, keys sorted), what it reads besides its
//! inputs (a file source's files), and its inputs' tokens, by input name.
//!
//! Every field goes into the hash with its length before it, so no two
//! different lists of fields hash the same bytes.

use std::fmt;

use crate::plan::{PlanNode, Source};

/// A node's cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

impl Key {
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    pub fn from_hex(text: &str) -> Option<Key> {
        blake3::Hash::from_hex(text)
            .ok()
            .map(|h| Key(*h.as_bytes()))
    }

    /// The first 12 hex digits, for people.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

/// As its hex digits (a step sent to another process).
impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let text = String::deserialize(d)?;
        Key::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("'{text}' is not a cache key")))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.short())
    }
}

/// What one node's key is made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parts {
    pub op: String,
    pub version: u32,
    /// The resolved parameters, as canonical JSON text.
    pub params: String,
    /// The hash of what the operator reads besides its inputs.
    pub fingerprint: Option<String>,
    /// Per input (name, then per fan-in member its key): the token of the
    /// node it reads.
    pub inputs: Vec<(String, String)>,
}

impl Parts {
    /// The parts of `node`'s key, its inputs' tokens taken from `token`
    /// (by node index).
    pub fn of(node: &PlanNode, fingerprint: Option<&str>, token: &[String]) -> Parts {
        let mut inputs = Vec::new();
        for input in &node.inputs {
            match &input.source {
                Source::One(n) => inputs.push((input.name.clone(), token[n.index()].clone())),
                Source::All { key, members } => {
                    for (k, n) in members {
                        inputs.push((
                            format!("{}[{key}={k}]", input.name),
                            token[n.index()].clone(),
                        ));
                    }
                    if members.is_empty() {
                        inputs.push((format!("{}[{key}]", input.name), String::new()));
                    }
                }
            }
        }
        Parts {
            op: node.op.clone(),
            version: node.version,
            params: node.resolved.to_string(),
            fingerprint: fingerprint.map(|f| blake3::hash(f.as_bytes()).to_hex().to_string()),
            inputs,
        }
    }

    pub fn key(&self) -> Key {
        let mut h = blake3::Hasher::new();
        let mut field = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(b"quiver cache key 1");
        field(self.op.as_bytes());
        field(&self.version.to_le_bytes());
        field(self.params.as_bytes());
        match &self.fingerprint {
            None => field(b"-"),
            Some(f) => field(format!("+{f}").as_bytes()),
        }
        field(&(self.inputs.len() as u64).to_le_bytes());
        for (name, token) in &self.inputs {
            field(name.as_bytes());
            field(token.as_bytes());
        }
        Key(*h.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Parts {
        Parts {
            op: "transform.sql".into(),
            version: 1,
            params: r#"{"query":"SELECT 1"}"#.into(),
            fingerprint: None,
            inputs: vec![("prices".into(), "abc".into())],
        }
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = parts().key();
        assert_eq!(base, parts().key());
        let mut p = parts();
        p.op = "transform.other".into();
        assert_ne!(p.key(), base);
        let mut p = parts();
        p.version = 2;
        assert_ne!(p.key(), base);
        let mut p = parts();
        p.params = r#"{"query":"SELECT 2"}"#.into();
        assert_ne!(p.key(), base);
        let mut p = parts();
        p.fingerprint = Some("f".into());
        assert_ne!(p.key(), base);
        let mut p = parts();
        p.inputs[0].1 = "abd".into();
        assert_ne!(p.key(), base);
        let mut p = parts();
        p.inputs[0].0 = "quotes".into();
        assert_ne!(p.key(), base);
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let mut a = parts();
        a.inputs = vec![("ab".into(), "c".into())];
        let mut b = parts();
        b.inputs = vec![("a".into(), "bc".into())];
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn hex_round_trips() {
        let k = parts().key();
        assert_eq!(Key::from_hex(&k.hex()), Some(k));
        assert_eq!(k.short().len(), 12);
    }
}
