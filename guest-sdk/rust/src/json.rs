//! Fast, shallow work on JSON objects.
//!
//! Most per-record logic reads a field or two and adds or drops a few. Fully
//! parsing the value into a `serde_json::Value` and writing it back costs
//! most of a record's budget; [`Object`] instead splits the top level into
//! `(name, raw value)` pairs, borrowed from the record and kept in order, and
//! writes untouched fields back byte for byte.

use std::borrow::Cow;

use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::Error;

type Field<'a> = (Cow<'a, str>, Cow<'a, RawValue>);

/// A JSON object's top level, fields in their original order, values unparsed.
#[derive(Debug, Clone)]
pub struct Object<'a> {
    fields: Vec<Field<'a>>,
}

impl<'a> Object<'a> {
    /// Splits `json` (which must be an object) into its fields; anything else
    /// is a poison error.
    pub fn parse(json: &'a [u8]) -> Result<Self, Error> {
        let fields: Fields<'a> = serde_json::from_slice(json)?;
        Ok(Object { fields: fields.0 })
    }

    /// The raw JSON of field `name`.
    pub fn raw(&self, name: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Field `name` deserialized as `T`; absent is `Ok(None)`, a mistyped field
    /// is a poison error naming the field.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Error> {
        match self.raw(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str(raw.get())
                .map(Some)
                .map_err(|e| Error::poison(format!("field `{name}`: {e}"))),
        }
    }

    /// The raw JSON at a dotted path (`customer.address.city`) through nested objects.
    pub fn raw_path(&self, path: &str) -> Result<Option<Box<RawValue>>, Error> {
        let mut parts = path.split('.');
        let first = parts.next().unwrap_or(path);
        let Some(mut current) = self.raw(first).map(|r| r.to_owned()) else {
            return Ok(None);
        };
        for part in parts {
            if !current.get().trim_start().starts_with('{') {
                return Ok(None);
            }
            let inner = Object::parse(current.get().as_bytes())?;
            match inner.raw(part) {
                Some(r) => current = r.to_owned(),
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }

    /// Sets field `name` (replacing it in place, or appending it) to `value`.
    pub fn set<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), Error> {
        let raw = serde_json::value::to_raw_value(value)
            .map_err(|e| Error::failed(format!("cannot serialize field `{name}`: {e}")))?;
        self.set_raw(name, raw);
        Ok(())
    }

    /// Sets field `name` to already-serialized JSON.
    pub fn set_raw(&mut self, name: &str, raw: Box<RawValue>) {
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = Cow::Owned(raw),
            None => self
                .fields
                .push((Cow::Owned(name.to_string()), Cow::Owned(raw))),
        }
    }

    /// Removes field `name`; returns whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.fields.len();
        self.fields.retain(|(n, _)| n != name);
        before != self.fields.len()
    }

    /// Field names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(n, _)| n.as_ref())
    }

    /// The object as compact JSON bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let size: usize = self
            .fields
            .iter()
            .map(|(n, v)| n.len() + v.get().len() + 4)
            .sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'{');
        for (i, (name, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, name.as_ref()).expect("writing to a Vec cannot fail");
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        out.push(b'}');
        out
    }
}

/// Renders raw JSON as text for keys and comparisons: a string without its
/// quotes, anything else as written.
pub fn raw_to_text(raw: &RawValue) -> Result<Cow<'_, str>, Error> {
    let text = raw.get();
    if text.starts_with('"') {
        let s: Cow<'_, str> = serde_json::from_str(text)?;
        Ok(s)
    } else {
        Ok(Cow::Borrowed(text))
    }
}

struct Fields<'a>(Vec<Field<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Fields<'a>, M::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(name) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    fields.push((name, Cow::Borrowed(value)));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_keep_order_and_untouched_bytes() {
        let src = br#"{"b": 1, "a": {"x": [1, 2]}, "s": "h\u00e9"}"#;
        let mut o = Object::parse(src).unwrap();
        assert_eq!(o.get::<i64>("b").unwrap(), Some(1));
        assert_eq!(o.raw_path("a.x").unwrap().unwrap().get(), "[1, 2]");
        assert!(o.raw_path("b.c").unwrap().is_none());
        o.set("b", &2).unwrap();
        o.set("new", "v").unwrap();
        assert!(o.remove("s"));
        assert_eq!(
            String::from_utf8(o.to_vec()).unwrap(),
            r#"{"b":2,"a":{"x": [1, 2]},"new":"v"}"#
        );
        assert_eq!(raw_to_text(o.raw("new").unwrap()).unwrap(), "v");
    }

    #[test]
    fn not_an_object_is_poison() {
        let e = Object::parse(b"[1]").unwrap_err();
        assert!(e.is_poison(), "{e}");
        assert!(Object::parse(b"{\"a\":").unwrap_err().is_poison());
    }
}
