//! The pipeline file as a tree of YAML nodes, each with its position, read
//! by the same parser (and options) as the typed structs in `raw`. The
//! schema check walks it so that every problem of shape is found in one
//! pass, where a typed deserialize stops at the first.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::Loc;

/// One YAML node. Scalars are as the parser resolved them (YAML 1.2 core
/// schema with strict booleans): `5` is a number, `yes` is text.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    /// `~`, `null` or nothing at all (`key:` with no value).
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Text(String),
    List(Vec<Node>),
    /// Entries in file order.
    Map(Vec<(Node, Node)>),
}

/// A node and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Yaml,
    pub loc: Loc,
}

impl Node {
    /// The text of a scalar (how a mapping key reads), `None` for a list or
    /// mapping.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Yaml::Null => Some("null".into()),
            Yaml::Bool(b) => Some(b.to_string()),
            Yaml::Int(n) => Some(n.to_string()),
            Yaml::Float(f) => Some(f.to_string()),
            Yaml::Text(s) => Some(s.clone()),
            Yaml::List(_) | Yaml::Map(_) => None,
        }
    }

    /// The value of `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Yaml::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar_text().as_deref() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Parses `text` with the options the typed deserialize uses.
pub fn parse(text: &str, options: serde_saphyr::Options) -> Result<Node, serde_saphyr::Error> {
    let root: Option<Spanned<Yaml>> = serde_saphyr::from_str_with_options(text, options)?;
    Ok(root.map_or(
        Node {
            value: Yaml::Null,
            loc: Loc { line: 1, column: 1 },
        },
        node,
    ))
}

fn node(s: Spanned<Yaml>) -> Node {
    Node {
        loc: Loc::of(&s.referenced),
        value: s.value,
    }
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(YamlVisitor)
    }
}

struct YamlVisitor;

impl<'de> Visitor<'de> for YamlVisitor {
    type Value = Yaml;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
        d.deserialize_any(YamlVisitor)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Yaml, E> {
        Ok(Yaml::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Yaml, E> {
        Ok(Yaml::Int(n.into()))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Yaml, E> {
        Ok(Yaml::Int(n.into()))
    }
    fn visit_i128<E: de::Error>(self, n: i128) -> Result<Yaml, E> {
        Ok(Yaml::Int(n))
    }
    fn visit_u128<E: de::Error>(self, n: u128) -> Result<Yaml, E> {
        Ok(i128::try_from(n).map_or(Yaml::Float(n as f64), Yaml::Int))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Yaml, E> {
        Ok(Yaml::Float(f))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Yaml, E> {
        Ok(Yaml::Text(s.to_string()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Yaml, E> {
        Ok(Yaml::Text(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Yaml>>()? {
            items.push(node(item));
        }
        Ok(Yaml::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Yaml>>()? {
            let (key, mut value) = (node(key), node(map.next_value::<Spanned<Yaml>>()?));
            if value.value == Yaml::Null {
                // `key:` with nothing after it: the problem is at the key.
                value.loc = key.loc;
            }
            entries.push((key, value));
        }
        Ok(Yaml::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        parse(text, serde_saphyr::options! { strict_booleans: true }).unwrap()
    }

    #[test]
    fn nodes_keep_their_positions_and_resolved_scalars() {
        let t = tree(
            "name: x\npartitions: 5\nsources:\n  a: { kind: file, ok: yes }\nsinks:\n  out:\nsteps:\n  - name: s\n",
        );
        let Yaml::Map(top) = &t.value else {
            panic!("{t:?}")
        };
        let keys: Vec<_> = top
            .iter()
            .map(|(k, _)| (k.scalar_text().unwrap(), k.loc.line, k.loc.column))
            .collect();
        assert_eq!(
            keys,
            [
                ("name".into(), 1, 1),
                ("partitions".into(), 2, 1),
                ("sources".into(), 3, 1),
                ("sinks".into(), 5, 1),
                ("steps".into(), 7, 1)
            ]
        );
        assert_eq!(t.get("partitions").unwrap().value, Yaml::Int(5));
        let a = t.get("sources").unwrap().get("a").unwrap();
        assert_eq!(a.loc, Loc { line: 4, column: 6 });
        assert_eq!(a.get("ok").unwrap().value, Yaml::Text("yes".into()));
        assert_eq!(
            t.get("sinks").unwrap().get("out").unwrap().value,
            Yaml::Null
        );
        let Yaml::List(steps) = &t.get("steps").unwrap().value else {
            panic!()
        };
        assert_eq!(steps[0].loc, Loc { line: 8, column: 5 });
    }
}
