//! Fast, shallow work on JSON objects.
//!
//! Most per-record logic reads a field or two and adds or drops a few. Fully
//! parsing a value into a `serde_json::Value` and writing it back costs most
//! of a record's budget inside Wasm; [`Object`] instead scans the top level
//! once into `(name, raw value text)` pairs, borrowed from the record and
//! kept in order, and writes untouched fields back byte for byte.
//!
//! The scan checks structure (quotes, brackets, commas, colons, UTF-8), not
//! every token: a value is only fully parsed when you ask for it with
//! [`Object::get`]. The host validates JSON-format values where records
//! enter (sources) and leave (sinks), so nothing malformed gets through.

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

type Field<'a> = (Cow<'a, str>, Cow<'a, str>);

/// A JSON object's top level: fields in their original order, values as
/// unparsed JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<'a> {
    fields: Vec<Field<'a>>,
}

impl<'a> Object<'a> {
    /// Splits `json` (which must be an object) into its fields; anything else
    /// is a poison error.
    pub fn parse(json: &'a [u8]) -> Result<Self, Error> {
        let text = std::str::from_utf8(json)?;
        Self::parse_str(text)
    }

    /// Like [`Object::parse`], for text.
    pub fn parse_str(text: &'a str) -> Result<Self, Error> {
        let mut s = Scanner {
            text,
            b: text.as_bytes(),
            i: 0,
        };
        let fields = s.object()?;
        s.ws();
        if s.i != s.b.len() {
            return Err(s.error("unexpected text after the object"));
        }
        Ok(Object { fields })
    }

    /// The JSON text of field `name`.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Field `name` deserialized as `T`; absent is `Ok(None)`, a mistyped
    /// field is a poison error naming the field.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Error> {
        match self.raw(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str(raw)
                .map(Some)
                .map_err(|e| Error::poison(format!("field `{name}`: {e}"))),
        }
    }

    /// The JSON text at a dotted path (`customer.address.city`) through
    /// nested objects; `None` when a step of the path is missing or not an object.
    pub fn raw_path(&self, path: &str) -> Result<Option<&str>, Error> {
        let mut parts = path.split('.');
        let first = parts.next().unwrap_or(path);
        let Some(mut current) = self.raw(first) else {
            return Ok(None);
        };
        for part in parts {
            if !current.starts_with('{') {
                return Ok(None);
            }
            let inner = Object::parse_str(current)?;
            match inner.fields.into_iter().find(|(n, _)| n == part) {
                // Values of a parsed slice borrow from `current`, itself
                // borrowed from `self`.
                Some((_, Cow::Borrowed(v))) => current = v,
                Some((_, Cow::Owned(_))) => unreachable!("parsed fields are borrowed"),
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }

    /// Sets field `name` (replacing it in place, or appending it) to `value`.
    pub fn set<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), Error> {
        let raw = serde_json::to_string(value)
            .map_err(|e| Error::failed(format!("cannot serialize field `{name}`: {e}")))?;
        self.set_raw(name, raw);
        Ok(())
    }

    /// Sets field `name` to already-serialized JSON text (not checked).
    pub fn set_raw(&mut self, name: &str, raw: impl Into<Cow<'a, str>>) {
        let raw = raw.into();
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = raw,
            None => self.fields.push((Cow::Owned(name.to_string()), raw)),
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

    /// The object as compact JSON bytes (untouched values keep their text).
    pub fn to_vec(&self) -> Vec<u8> {
        let size: usize = self.fields.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'{');
        for (i, (name, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_field(&mut out, (name, value));
        }
        out.push(b'}');
        out
    }
}

/// The JSON text at a dotted `path` (`amount`, `customer.address.city`) of
/// the object `json`, found by scanning only as far as needed and without
/// allocating: the fastest way to read a field or two. `None` when a step of
/// the path is missing or not an object; a `json` that is not an object, or
/// malformed structure on the way, is a poison error.
pub fn find<'a>(json: &'a [u8], path: &str) -> Result<Option<&'a str>, Error> {
    let mut current = std::str::from_utf8(json)?;
    if !current.trim_start().starts_with('{') {
        return Err(Error::poison("value is not a JSON object"));
    }
    for part in path.split('.') {
        let mut s = Scanner {
            text: current,
            b: current.as_bytes(),
            i: 0,
        };
        match s.find_field(part)? {
            Some(value) => current = value,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// Field changes applied to JSON objects in one pass over each: the fastest
/// way to add, replace or drop a few fields. Untouched fields are copied as
/// they are; set fields replace in place or are appended in order.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    set: Vec<(String, String)>,
    remove: Vec<String>,
}

impl Patch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets field `name` to `value` (serialized once, now).
    pub fn set<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<&mut Self, Error> {
        let raw = serde_json::to_string(value)
            .map_err(|e| Error::failed(format!("cannot serialize field `{name}`: {e}")))?;
        Ok(self.set_raw(name, raw))
    }

    /// Sets field `name` to already-serialized JSON text (not checked).
    pub fn set_raw(&mut self, name: &str, raw: String) -> &mut Self {
        self.set.retain(|(n, _)| n != name);
        self.remove.retain(|n| n != name);
        self.set.push((name.to_string(), raw));
        self
    }

    /// Drops field `name`.
    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.set.retain(|(n, _)| n != name);
        self.remove.push(name.to_string());
        self
    }

    /// The object `json` with the patch applied, plus `extra` fields set for
    /// this record only (as `(name, raw JSON text)`; they win over the patch).
    /// A `json` that is not an object is a poison error.
    pub fn apply(&self, json: &[u8], extra: &[(&str, &str)]) -> Result<Vec<u8>, Error> {
        let text = std::str::from_utf8(json)?;
        let mut s = Scanner {
            text,
            b: text.as_bytes(),
            i: 0,
        };
        let count = extra.len() + self.set.len();
        let change = |c: usize| -> (&str, &str) {
            match extra.get(c) {
                Some(&(n, v)) => (n, v),
                None => {
                    let (n, v) = &self.set[c - extra.len()];
                    (n.as_str(), v.as_str())
                }
            }
        };
        let mut done = Done::new(count);
        let added: usize = (0..count)
            .map(|c| change(c).0.len() + change(c).1.len() + 4)
            .sum();
        let mut out = Vec::with_capacity(json.len() + added);
        out.push(b'{');
        let mut first = true;
        let mut separate = |out: &mut Vec<u8>| {
            if !std::mem::replace(&mut first, false) {
                out.push(b',');
            }
        };
        s.each_field(|key, field, _| {
            if let Some(c) = (0..count).find(|&c| change(c).0 == key) {
                if done.mark(c) {
                    separate(&mut out);
                    write_field(&mut out, change(c));
                }
            } else if !self.remove.iter().any(|r| *r == key) {
                separate(&mut out);
                out.extend_from_slice(field.as_bytes());
            }
            None::<()>
        })?;
        s.ws();
        if s.i != s.b.len() {
            return Err(s.error("unexpected text after the object"));
        }
        for c in 0..count {
            // A name set twice (per record and in the patch) is written once:
            // the first change with that name wins.
            let shadowed = (0..c).any(|d| change(d).0 == change(c).0);
            if done.mark(c) && !shadowed {
                separate(&mut out);
                write_field(&mut out, change(c));
            }
        }
        out.push(b'}');
        Ok(out)
    }
}

/// Which changes of a [`Patch`] were written, without allocating for the
/// usual handful.
enum Done {
    Bits(u64),
    Many(Vec<bool>),
}

impl Done {
    fn new(count: usize) -> Self {
        if count <= 64 {
            Done::Bits(0)
        } else {
            Done::Many(vec![false; count])
        }
    }

    /// Marks change `c` written; returns whether it was not yet.
    fn mark(&mut self, c: usize) -> bool {
        match self {
            Done::Bits(bits) => {
                let fresh = *bits & (1 << c) == 0;
                *bits |= 1 << c;
                fresh
            }
            Done::Many(v) => !std::mem::replace(&mut v[c], true),
        }
    }
}

/// `"name":value` (the value is JSON text).
fn write_field(out: &mut Vec<u8>, (name, value): (&str, &str)) {
    write_string(out, name);
    out.push(b':');
    out.extend_from_slice(value.as_bytes());
}

/// A JSON string literal for `s`.
fn write_string(out: &mut Vec<u8>, s: &str) {
    let plain = s.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    }
}

/// Renders raw JSON as text for keys and comparisons: a string without its
/// quotes (unescaped), anything else as written.
pub fn raw_to_text(raw: &str) -> Result<Cow<'_, str>, Error> {
    if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        if !inner.contains('\\') {
            return Ok(Cow::Borrowed(inner));
        }
        let s: String = serde_json::from_str(raw)?;
        Ok(Cow::Owned(s))
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// A structural scanner over JSON text.
struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn error(&self, what: &str) -> Error {
        Error::poison(format!("invalid JSON object at byte {}: {what}", self.i))
    }

    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    #[inline]
    fn expect(&mut self, c: u8, what: &str) -> Result<(), Error> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn object(&mut self) -> Result<Vec<Field<'a>>, Error> {
        let mut fields = Vec::with_capacity(8);
        self.each_field(|name, _, value| {
            fields.push((name, Cow::Borrowed(value)));
            None::<()>
        })?;
        Ok(fields)
    }

    /// Scans the object at the cursor for field `name`; stops at the first
    /// match. Something other than an object has no fields.
    fn find_field(&mut self, name: &str) -> Result<Option<&'a str>, Error> {
        self.ws();
        if self.b.get(self.i) != Some(&b'{') {
            return Ok(None);
        }
        self.each_field(|key, _, value| (key == name).then_some(value))
    }

    /// Walks the fields of the object at the cursor, calling
    /// `visit(name, the whole "name": value text, value text)` for each,
    /// until it returns `Some`.
    fn each_field<T>(
        &mut self,
        mut visit: impl FnMut(Cow<'a, str>, &'a str, &'a str) -> Option<T>,
    ) -> Result<Option<T>, Error> {
        self.expect(b'{', "expected `{`")?;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(None);
        }
        loop {
            self.ws();
            let field_start = self.i;
            let name = self.key()?;
            self.expect(b':', "expected `:` after a field name")?;
            self.ws();
            let start = self.i;
            self.value()?;
            let (field, value) = (&self.text[field_start..self.i], &self.text[start..self.i]);
            if let Some(found) = visit(name, field, value) {
                return Ok(Some(found));
            }
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(None);
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn key(&mut self) -> Result<Cow<'a, str>, Error> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(self.error("expected a field name"));
        }
        let start = self.i;
        let escaped = self.string()?;
        let quoted = &self.text[start..self.i];
        if escaped {
            let s: String = serde_json::from_str(quoted)?;
            Ok(Cow::Owned(s))
        } else {
            Ok(Cow::Borrowed(&quoted[1..quoted.len() - 1]))
        }
    }

    /// Skips a string starting at its opening quote; returns whether it had escapes.
    #[inline]
    fn string(&mut self) -> Result<bool, Error> {
        self.i += 1;
        let mut escaped = false;
        loop {
            let rest = self.b.get(self.i..).unwrap_or_default();
            match memchr::memchr2(b'"', b'\\', rest) {
                Some(n) if rest[n] == b'"' => {
                    self.i += n + 1;
                    return Ok(escaped);
                }
                Some(n) => {
                    escaped = true;
                    self.i += n + 2;
                }
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// Skips one value of any kind.
    fn value(&mut self) -> Result<(), Error> {
        match self.b.get(self.i) {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{' | b'[') => self.nested(),
            Some(_) => {
                let start = self.i;
                while let Some(&c) = self.b.get(self.i) {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    Err(self.error("expected a value"))
                } else {
                    Ok(())
                }
            }
            None => Err(self.error("expected a value")),
        }
    }

    /// Skips a nested object or array, keeping track of brackets and strings.
    fn nested(&mut self) -> Result<(), Error> {
        let mut stack: Vec<u8> = Vec::new();
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' => stack.push(b'}'),
                b'[' => stack.push(b']'),
                b'}' | b']' => {
                    if stack.pop() != Some(c) {
                        return Err(self.error("mismatched bracket"));
                    }
                    if stack.is_empty() {
                        self.i += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
        Err(self.error("unterminated object or array"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_keep_order_and_untouched_bytes() {
        let src = br#"{"b": 1, "a": {"x": [1, "]}", 2]}, "s": "h\u00e9"}"#;
        let mut o = Object::parse(src).unwrap();
        assert_eq!(o.get::<i64>("b").unwrap(), Some(1));
        assert_eq!(o.raw_path("a.x").unwrap(), Some(r#"[1, "]}", 2]"#));
        assert_eq!(o.raw_path("b.c").unwrap(), None);
        assert_eq!(o.raw_path("nope").unwrap(), None);
        o.set("b", &2).unwrap();
        o.set("new", "v").unwrap();
        assert!(o.remove("s"));
        assert_eq!(
            String::from_utf8(o.to_vec()).unwrap(),
            r#"{"b":2,"a":{"x": [1, "]}", 2]},"new":"v"}"#
        );
        assert_eq!(raw_to_text(o.raw("new").unwrap()).unwrap(), "v");
        let escaped = Object::parse(br#"{"a\"b": "x\ty", "e": {}}"#).unwrap();
        assert_eq!(escaped.names().collect::<Vec<_>>(), ["a\"b", "e"]);
        assert_eq!(raw_to_text(escaped.raw("a\"b").unwrap()).unwrap(), "x\ty");
        assert_eq!(
            String::from_utf8(escaped.to_vec()).unwrap(),
            r#"{"a\"b":"x\ty","e":{}}"#
        );
        assert_eq!(Object::parse(b" { } ").unwrap().names().count(), 0);
    }

    #[test]
    fn find_stops_at_the_field_and_follows_paths() {
        let src = br#"{"a": 1, "c": {"n": "DE", "m": [1]}, "z": "after"}"#;
        assert_eq!(find(src, "a").unwrap(), Some("1"));
        assert_eq!(find(src, "c.n").unwrap(), Some("\"DE\""));
        assert_eq!(find(src, "c.x").unwrap(), None);
        assert_eq!(find(src, "a.b").unwrap(), None);
        assert_eq!(find(src, "q").unwrap(), None);
        // Only what is scanned is checked: the broken tail is never reached.
        assert_eq!(find(br#"{"a": 1, "b": [}"#, "a").unwrap(), Some("1"));
        assert!(find(br#"{"a" 1}"#, "a").is_err());
        assert!(find(br#"[1]"#, "a").unwrap_err().is_poison());
    }

    #[test]
    fn patch_replaces_appends_and_drops_in_one_pass() {
        let mut p = Patch::new();
        p.set("b", &2)
            .unwrap()
            .set("new", "v")
            .unwrap()
            .remove("gone");
        let src = br#"{"a": {"x": 1}, "b": 1, "gone": [1], "c": "k"}"#;
        let out = p.apply(src, &[("ts", "42"), ("c", "\"key\"")]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a": {"x": 1},"b":2,"c":"key","ts":42,"new":"v"}"#
        );
        assert_eq!(p.apply(b"{}", &[]).unwrap(), br#"{"b":2,"new":"v"}"#);
        assert_eq!(
            p.apply(b"{}", &[("b", "3")]).unwrap(),
            br#"{"b":3,"new":"v"}"#
        );
        assert!(p.apply(b"[1]", &[]).unwrap_err().is_poison());
        assert!(p.apply(br#"{"a":1"#, &[]).unwrap_err().is_poison());
    }

    #[test]
    fn structure_errors_are_poison() {
        for bad in [
            &b"[1]"[..],
            b"{\"a\":",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"{\"a\":[1}",
            b"{\"a\":\"x}",
            b"{\"a\":1} x",
            b"\"str\"",
            b"{\"a\":\xff}",
            b"{\"a\":\"x\\\"}",
        ] {
            let e = Object::parse(bad).unwrap_err();
            assert!(e.is_poison(), "{e}");
        }
    }
}
