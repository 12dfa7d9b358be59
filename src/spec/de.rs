//! A serde `Deserializer` over positioned YAML, so that typed spec structs
//! get errors that name the file position and YAML path of the bad value,
//! and a did-you-mean for misspelled fields.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer as _};

use super::yaml::{Pos, Value, Yaml};
use crate::diag::suggest;

/// A value that does not fit the type expected at its place.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub message: String,
    pub pos: Option<Pos>,
    pub path: Option<String>,
}

impl DeError {
    /// Fills in the place, unless a deeper value already did.
    fn at(mut self, pos: Pos, path: &str) -> Self {
        if self.pos.is_none() {
            self.pos = Some(pos);
            self.path = Some(path.to_string());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            pos: None,
            path: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown field '{field}'");
        match suggest(field, expected.iter().copied()) {
            Some(s) => message.push_str(&format!(" — did you mean '{s}'?")),
            None if !expected.is_empty() => {
                message.push_str(&format!("; expected one of: {}", expected.join(", ")))
            }
            None => {}
        }
        de::Error::custom(message)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown value '{variant}'");
        match suggest(variant, expected.iter().copied()) {
            Some(s) => message.push_str(&format!(" — did you mean '{s}'?")),
            None => message.push_str(&format!("; expected one of: {}", expected.join(", "))),
        }
        de::Error::custom(message)
    }
}

/// Deserializes `T` from `node`, whose YAML path is `path`.
pub fn from_yaml<'a, T: Deserialize<'a>>(node: &'a Yaml, path: &str) -> Result<T, DeError> {
    T::deserialize(Deser {
        node,
        path: path.to_string(),
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

struct Deser<'a> {
    node: &'a Yaml,
    path: String,
}

// The raw-YAML passthrough: a `Yaml` field inside a typed struct keeps its
// positions. The deserializer recognises the marker name and hands the node
// over through this slot, the way `toml`'s `Spanned` works.
const RAW_YAML: &str = "$quiver::Yaml";
thread_local! {
    static RAW_SLOT: RefCell<Option<Yaml>> = const { RefCell::new(None) };
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Yaml;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Yaml, E> {
                RAW_SLOT
                    .with(|slot| slot.borrow_mut().take())
                    .ok_or_else(|| E::custom("raw YAML values need quiver's YAML deserializer"))
            }
        }
        deserializer.deserialize_newtype_struct(RAW_YAML, RawVisitor)
    }
}

macro_rules! forward_to_any {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_any(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Deser<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (pos, path) = (self.node.pos, self.path.clone());
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter().enumerate(),
                path: &self.path,
            }),
            Value::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
                path: &self.path,
            }),
        };
        result.map_err(|e| e.at(pos, &path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Plain scalars such as `5m`, `2026-01-05` or `30` read as strings where
        // a string is expected.
        let (pos, path) = (self.node.pos, self.path.clone());
        match &self.node.value {
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => visitor
                .visit_string(self.node.scalar_text())
                .map_err(|e: DeError| e.at(pos, &path)),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == RAW_YAML {
            RAW_SLOT.with(|slot| *slot.borrow_mut() = Some(self.node.clone()));
            return visitor.visit_unit();
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (pos, path) = (self.node.pos, self.path.clone());
        let result = match &self.node.value {
            Value::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                visitor.visit_enum(EnumAccess {
                    key,
                    value,
                    path: &self.path,
                })
            }
            _ => Err(de::Error::custom(format!(
                "expected one of the allowed names, found {}",
                self.node.kind()
            ))),
        };
        result.map_err(|e| e.at(pos, &path))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_seq deserialize_map deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if !matches!(self.node.value, Value::Map(_)) {
            return Err(<DeError as de::Error>::custom(format!(
                "expected a mapping, found {}",
                self.node.kind()
            ))
            .at(self.node.pos, &self.path));
        }
        self.deserialize_any(visitor)
    }
}

struct SeqAccess<'a, I> {
    items: I,
    path: &'a str,
}

impl<'de, I: Iterator<Item = (usize, &'de Yaml)>> de::SeqAccess<'de> for SeqAccess<'_, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => {
                let path = format!("{}[{i}]", self.path);
                seed.deserialize(Deser {
                    node,
                    path: path.clone(),
                })
                .map(Some)
                // A value that deserialized but failed a check afterwards
                // (`DurationSpec::parse`) is still this element's fault.
                .map_err(|e| e.at(node.pos, &path))
            }
        }
    }
}

struct MapAccess<'a, 'de, I> {
    entries: I,
    value: Option<(&'de Yaml, String)>,
    path: &'a str,
}

impl<'de, I: Iterator<Item = &'de (Yaml, Yaml)>> de::MapAccess<'de> for MapAccess<'_, 'de, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let path = join(self.path, &key.scalar_text());
        self.value = Some((value, path.clone()));
        seed.deserialize(Deser { node: key, path }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (node, path) = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("internal error: value without a key"))?;
        // A value that deserialized but failed a check afterwards
        // (`DurationSpec::parse`) is still this value's fault.
        seed.deserialize(Deser {
            node,
            path: path.clone(),
        })
        .map_err(|e| e.at(node.pos, &path))
    }
}

struct EnumAccess<'a, 'de> {
    key: &'de Yaml,
    value: &'de Yaml,
    path: &'a str,
}

impl<'a, 'de> de::EnumAccess<'de> for EnumAccess<'a, 'de> {
    type Error = DeError;
    type Variant = Deser<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Deser<'de>), DeError> {
        let path = join(self.path, &self.key.scalar_text());
        let variant = seed.deserialize(Deser {
            node: self.key,
            path: path.clone(),
        })?;
        Ok((
            variant,
            Deser {
                node: self.value,
                path,
            },
        ))
    }
}

impl<'de> de::VariantAccess<'de> for Deser<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read through Debug only: the tests are about the errors
    struct Outer {
        name: String,
        inner: Inner,
        #[serde(default)]
        raw: Option<Yaml>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
        #[serde(default)]
        label: Option<String>,
    }

    #[test]
    fn unknown_field_names_position_path_and_suggestion() {
        let doc = parse("name: x\ninner:\n  count: 1\n  lable: y\n").unwrap();
        let err = from_yaml::<Outer>(&doc, "").unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 4, col: 3 }));
        assert_eq!(err.path.as_deref(), Some("inner.lable"));
        assert_eq!(err.message, "unknown field 'lable' — did you mean 'label'?");
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let doc = parse("name: x\ninner:\n  count: many\n").unwrap();
        let err = from_yaml::<Outer>(&doc, "").unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 3, col: 10 }));
        assert_eq!(err.path.as_deref(), Some("inner.count"));
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn checks_after_deserializing_point_at_the_value() {
        #[derive(Debug, Deserialize)]
        struct Checked {
            #[allow(dead_code)]
            timeout: crate::spec::DurationSpec,
        }
        let doc = parse("timeout: 10\n").unwrap();
        let err = from_yaml::<Checked>(&doc, "node").unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 1, col: 10 }));
        assert_eq!(err.path.as_deref(), Some("node.timeout"));
    }

    #[test]
    fn missing_field_points_at_the_mapping() {
        let doc = parse("name: x\ninner:\n  label: y\n").unwrap();
        let err = from_yaml::<Outer>(&doc, "").unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 3, col: 3 }));
        assert!(
            err.message.contains("missing field `count`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn raw_yaml_fields_keep_their_positions() {
        let doc = parse("name: 12\ninner: {count: 1}\nraw:\n  a: [1, 2]\n").unwrap();
        let outer: Outer = from_yaml(&doc, "").unwrap();
        assert_eq!(outer.name, "12");
        let raw = outer.raw.unwrap();
        assert_eq!(raw.get("a").unwrap().pos, Pos { line: 4, col: 6 });
    }
}
