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

use memchr::memmem;
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
        let mut s = Scanner::new(text.as_bytes());
        let mut fields = Vec::with_capacity(8);
        s.each_member(|m| {
            // Spans start and end at ASCII structure, so they are char
            // boundaries of `text`.
            let name = if m.escaped {
                Cow::Owned(m.unescaped_name(text.as_bytes())?)
            } else {
                Cow::Borrowed(&text[m.name.clone()])
            };
            fields.push((name, Cow::Borrowed(&text[m.value.clone()])));
            Ok(None::<()>)
        })?;
        s.end()?;
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
/// malformed structure on the way, is a poison error. A hot loop should
/// build a [`Path`] once instead.
pub fn find<'a>(json: &'a [u8], path: &str) -> Result<Option<&'a str>, Error> {
    find_parts(json, path.split('.'))
}

fn find_parts<'a, 'p>(
    json: &'a [u8],
    parts: impl Iterator<Item = &'p str>,
) -> Result<Option<&'a str>, Error> {
    let mut s = Scanner::new(json);
    s.ws();
    if s.b.get(s.i) != Some(&b'{') {
        return Err(Error::poison("value is not a JSON object"));
    }
    let mut current = json;
    for part in parts {
        match Scanner::new(current).find_member(part)? {
            Some(value) => current = &current[value],
            None => return Ok(None),
        }
    }
    Ok(Some(std::str::from_utf8(current)?))
}

/// A dotted field path split once, for [`find`] on every record. Reads from
/// a config string (`field: customer.country`) and shows as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(from = "String")]
pub struct Path {
    text: String,
    parts: Vec<String>,
}

impl Path {
    pub fn new(path: &str) -> Self {
        Path::from(path.to_string())
    }

    /// Like [`find`] with this path.
    pub fn find<'a>(&self, json: &'a [u8]) -> Result<Option<&'a str>, Error> {
        find_parts(json, self.parts.iter().map(String::as_str))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl From<String> for Path {
    fn from(text: String) -> Self {
        let parts = text.split('.').map(str::to_string).collect();
        Path { text, parts }
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Field changes applied to JSON objects in one pass over each: the fastest
/// way to add, replace or drop a few fields. Untouched fields are copied as
/// they are; set fields replace in place or are appended in order.
///
/// When a value has no escapes and names none of the changed fields
/// anywhere (the usual case for enrichment), the changes are appended
/// after the value's text without scanning it member by member; the value's
/// inner structure is then left for the host's check at the sink.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    set: Vec<(String, String)>,
    remove: Vec<String>,
    /// Finds `"name"` for every set or removed field.
    mentions: Vec<memmem::Finder<'static>>,
    /// The set fields as written after the last member: `"a":1,"b":2`.
    suffix: Vec<u8>,
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
        self.index_names();
        self
    }

    /// Drops field `name`.
    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.set.retain(|(n, _)| n != name);
        self.remove.push(name.to_string());
        self.index_names();
        self
    }

    fn index_names(&mut self) {
        let names = self.set.iter().map(|(n, _)| n).chain(&self.remove);
        self.mentions = names
            .map(|n| memmem::Finder::new(&quoted(n)).into_owned())
            .collect();
        self.suffix.clear();
        for (i, (name, value)) in self.set.iter().enumerate() {
            if i > 0 {
                self.suffix.push(b',');
            }
            write_field(&mut self.suffix, (name, value));
        }
    }

    /// The `c`-th change: the record's `extra` fields first, then the patch's.
    fn change<'s>(&'s self, extra: &[(&'s str, &'s str)], c: usize) -> (&'s str, &'s str) {
        match extra.get(c) {
            Some(&(n, v)) => (n, v),
            None => {
                let (n, v) = &self.set[c - extra.len()];
                (n.as_str(), v.as_str())
            }
        }
    }

    /// Whether an earlier change has the same name as change `c` (the first
    /// change with a name wins).
    fn shadowed(&self, extra: &[(&str, &str)], c: usize) -> bool {
        let name = self.change(extra, c).0;
        (0..c).any(|d| self.change(extra, d).0 == name)
    }

    /// The fast path: when `json` is an object without escapes in which no
    /// changed name appears as `"name"` at all, nothing is replaced or
    /// dropped, and the changes go after its last member. Returns false
    /// (having written nothing) when that does not hold.
    fn append_to(&self, json: &[u8], extra: &[(&str, &str)], out: &mut Vec<u8>) -> bool {
        let (Some(first), Some(last)) = (
            json.iter().position(|&c| !is_ws(c)),
            json.iter().rposition(|&c| !is_ws(c)),
        ) else {
            return false;
        };
        if json[first] != b'{' || json[last] != b'}' || first == last {
            return false;
        }
        let body = &json[first..last];
        let mentioned = |name: &str| {
            memmem::find_iter(body, name.as_bytes()).any(|at| {
                at > 0 && body[at - 1] == b'"' && body.get(at + name.len()) == Some(&b'"')
            })
        };
        if memchr::memchr(b'\\', body).is_some()
            || self.mentions.iter().any(|f| f.find(body).is_some())
            || extra.iter().any(|(n, _)| mentioned(n))
        {
            return false;
        }
        let mut empty = body[1..].iter().all(|&c| is_ws(c));
        if extra.is_empty() {
            // The usual case: the patch's own fields, written once at init.
            out.reserve(body.len() + self.suffix.len() + 2);
            out.extend_from_slice(body);
            if !self.suffix.is_empty() {
                if !empty {
                    out.push(b',');
                }
                out.extend_from_slice(&self.suffix);
            }
            out.push(b'}');
            return true;
        }
        let count = extra.len() + self.set.len();
        out.reserve(
            body.len()
                + 1
                + (0..count)
                    .map(|c| field_size(self.change(extra, c)))
                    .sum::<usize>(),
        );
        out.extend_from_slice(body);
        for c in 0..count {
            if !self.shadowed(extra, c) {
                if !std::mem::replace(&mut empty, false) {
                    out.push(b',');
                }
                write_field(out, self.change(extra, c));
            }
        }
        out.push(b'}');
        true
    }

    /// The object `json` with the patch applied, plus `extra` fields set for
    /// this record only (as `(name, raw JSON text)`; they win over the patch).
    /// A `json` that is not an object is a poison error.
    pub fn apply(&self, json: &[u8], extra: &[(&str, &str)]) -> Result<Vec<u8>, Error> {
        let mut out = crate::pool::take(json.len() + self.suffix.len() + 2);
        self.apply_into(json, extra, &mut out)?;
        Ok(out)
    }

    /// Like [`Patch::apply`], appending the result to `out` (left as it was
    /// on error): lets a hot loop reuse one buffer.
    pub fn apply_into(
        &self,
        json: &[u8],
        extra: &[(&str, &str)],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        if self.append_to(json, extra, out) {
            return Ok(());
        }
        let mark = out.len();
        let result = self.write_patched(json, extra, out);
        if result.is_err() {
            out.truncate(mark);
        }
        result
    }

    fn write_patched(
        &self,
        json: &[u8],
        extra: &[(&str, &str)],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let mut s = Scanner::new(json);
        let count = extra.len() + self.set.len();
        let change = |c: usize| self.change(extra, c);
        let mut done = Done::new(count);
        let added: usize = (0..count).map(|c| field_size(change(c))).sum();
        out.reserve(json.len() + added);
        out.push(b'{');
        let mut first = true;
        let mut separate = |out: &mut Vec<u8>| {
            if !std::mem::replace(&mut first, false) {
                out.push(b',');
            }
        };
        let b = s.b;
        s.each_member(|m| {
            let unescaped;
            let name = if m.escaped {
                unescaped = m.unescaped_name(b)?;
                unescaped.as_bytes()
            } else {
                &b[m.name.clone()]
            };
            if let Some(c) = (0..count).find(|&c| change(c).0.as_bytes() == name) {
                if done.mark(c) {
                    separate(out);
                    write_field(out, change(c));
                }
            } else if !self.remove.iter().any(|r| r.as_bytes() == name) {
                separate(out);
                out.extend_from_slice(&b[m.whole.clone()]);
            }
            Ok(None::<()>)
        })?;
        s.end()?;
        for c in 0..count {
            if done.mark(c) && !self.shadowed(extra, c) {
                separate(out);
                write_field(out, change(c));
            }
        }
        out.push(b'}');
        Ok(())
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

/// `"name"` as it appears in JSON text without escapes.
fn quoted(name: &str) -> Vec<u8> {
    [b"\"", name.as_bytes(), b"\""].concat()
}

/// About how many bytes [`write_field`] writes.
fn field_size((name, value): (&str, &str)) -> usize {
    name.len() + value.len() + 4
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

/// Byte positions in the scanned text.
type Span = std::ops::Range<usize>;

/// Where one `"name": value` member lies in the scanned text.
struct Member {
    /// The name without its quotes.
    name: Span,
    /// Whether the name has escapes (then `name` is not its text).
    escaped: bool,
    /// The whole member, from the name's opening quote to the value's end.
    whole: Span,
    value: Span,
}

impl Member {
    /// Whether the member's name in `b` (the scanned text) is `name`.
    #[inline]
    fn is_named(&self, b: &[u8], name: &[u8]) -> Result<bool, Error> {
        if self.escaped {
            Ok(self.unescaped_name(b)?.as_bytes() == name)
        } else {
            Ok(&b[self.name.clone()] == name)
        }
    }

    #[cold]
    fn unescaped_name(&self, b: &[u8]) -> Result<String, Error> {
        Ok(serde_json::from_slice(
            &b[self.name.start - 1..self.name.end + 1],
        )?)
    }
}

/// Values nested deeper than this are refused, as serde_json (which the host
/// validates with) refuses them.
const MAX_DEPTH: u32 = 128;

/// A structural scanner over JSON bytes.
///
/// It looks only at ASCII structure. Bytes of multi-byte UTF-8 sequences are
/// never ASCII, so it can work on bytes, and callers check UTF-8 only of the
/// parts they hand out as text.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn new(b: &'a [u8]) -> Self {
        Scanner { b, i: 0 }
    }

    fn error(&self, what: &str) -> Error {
        Error::poison(format!("invalid JSON object at byte {}: {what}", self.i))
    }

    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && is_ws(self.b[self.i]) {
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

    /// Fails unless only whitespace is left.
    fn end(&mut self) -> Result<(), Error> {
        self.ws();
        if self.i == self.b.len() {
            Ok(())
        } else {
            Err(self.error("unexpected text after the object"))
        }
    }

    /// Scans the object at the cursor for member `name` and returns where its
    /// value lies; stops at the first match. Something other than an object
    /// has no members.
    fn find_member(&mut self, name: &str) -> Result<Option<Span>, Error> {
        self.ws();
        if self.b.get(self.i) != Some(&b'{') {
            return Ok(None);
        }
        let b = self.b;
        self.each_member(|m| Ok(m.is_named(b, name.as_bytes())?.then(|| m.value.clone())))
    }

    /// Walks the members of the object at the cursor, calling `visit` for
    /// each, until it returns `Some` (or an error).
    fn each_member<T>(
        &mut self,
        mut visit: impl FnMut(&Member) -> Result<Option<T>, Error>,
    ) -> Result<Option<T>, Error> {
        self.expect(b'{', "expected `{`")?;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(None);
        }
        loop {
            self.ws();
            let start = self.i;
            if self.b.get(self.i) != Some(&b'"') {
                return Err(self.error("expected a field name"));
            }
            let escaped = self.string()?;
            let name = start + 1..self.i - 1;
            self.expect(b':', "expected `:` after a field name")?;
            self.ws();
            let value_start = self.i;
            self.value()?;
            let member = Member {
                name,
                escaped,
                whole: start..self.i,
                value: value_start..self.i,
            };
            if let Some(found) = visit(&member)? {
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

    /// Skips a string starting at its opening quote; returns whether it had
    /// escapes. Looks at eight bytes per step for the closing quote or a
    /// backslash: field names and short values are the common case, too
    /// short for a `memchr` call to pay off.
    #[inline]
    fn string(&mut self) -> Result<bool, Error> {
        let b = self.b;
        let mut i = self.i + 1;
        let mut escaped = false;
        loop {
            if let Some(chunk) = b.get(i..i + 8) {
                let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
                let hits = bytes_equal(word, b'"') | bytes_equal(word, b'\\');
                if hits == 0 {
                    i += 8;
                    continue;
                }
                i += (hits.trailing_zeros() / 8) as usize;
            }
            match b.get(i) {
                Some(b'"') => {
                    self.i = i + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    i += 2;
                }
                Some(_) => i += 1,
                None => {
                    self.i = b.len();
                    return Err(self.error("unterminated string"));
                }
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
                    if ENDS_SCALAR[c as usize] {
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

    /// Skips a nested object or array, matching brackets (one bit per level:
    /// set for `{`) and skipping strings.
    fn nested(&mut self) -> Result<(), Error> {
        let mut open: u128 = 0;
        let mut depth = 0u32;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => {
                    if depth == MAX_DEPTH {
                        return Err(self.error("nested deeper than 128 levels"));
                    }
                    open = (open << 1) | u128::from(c == b'{');
                    depth += 1;
                }
                b'}' | b']' => {
                    if depth == 0 || ((open & 1) == 1) != (c == b'}') {
                        return Err(self.error("mismatched bracket"));
                    }
                    open >>= 1;
                    depth -= 1;
                    if depth == 0 {
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

/// Bytes that end a number or literal: a separator, a closing bracket or
/// whitespace. One load per byte instead of seven comparisons.
static ENDS_SCALAR: [bool; 256] = {
    let mut t = [false; 256];
    let ends = b",}] \t\n\r";
    let mut i = 0;
    while i < ends.len() {
        t[ends[i] as usize] = true;
        i += 1;
    }
    t
};

/// JSON's insignificant whitespace.
#[inline]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// A word with the high bit set in each byte of `word` equal to `c`, and
/// possibly in bytes above the first such one: its lowest set bit is exact.
#[inline]
fn bytes_equal(word: u64, c: u8) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let x = word ^ (ONES * u64::from(c));
    x.wrapping_sub(ONES) & !x & HIGHS
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
        // Not a prefix; escapes count.
        let tricky = br#"{"amountX": 1, "amoun": 2, "\u0061mount": 3, "amount": 4}"#;
        assert_eq!(find(tricky, "amount").unwrap(), Some("3"));
        assert_eq!(find(br#"{"a\"b": 5}"#, "a\"b").unwrap(), Some("5"));
        // A path split once finds the same, reads from config text and
        // shows as written.
        let path: Path = serde_json::from_str(r#""c.n""#).unwrap();
        assert_eq!(path.find(src).unwrap(), Some("\"DE\""));
        assert_eq!(
            Path::new("a").find(b"{\"a\":-1.5e3}").unwrap(),
            Some("-1.5e3")
        );
        assert_eq!(
            (path.as_str(), path.to_string()),
            ("c.n", "c.n".to_string())
        );
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
    fn fast_append_agrees_with_the_member_scan() {
        let mut p = Patch::new();
        p.set("checked", &true).unwrap();
        // Appended without a member scan: inner spacing is kept.
        assert_eq!(
            p.apply(br#" {"a": 1, "n": {"x": "check"}} "#, &[("ts", "7")])
                .unwrap(),
            br#"{"a": 1, "n": {"x": "check"},"ts":7,"checked":true}"#
        );
        assert_eq!(p.apply(b"{ }", &[]).unwrap(), br#"{ "checked":true}"#);
        // A mention anywhere, an escape, or an extra name already there
        // sends the value through the member scan, which replaces in place.
        for (src, want) in [
            (
                &br#"{"checked":false,"a":1}"#[..],
                &br#"{"checked":true,"a":1}"#[..],
            ),
            (
                br#"{"a":{"checked":1}}"#,
                br#"{"a":{"checked":1},"checked":true}"#,
            ),
            (
                br#"{"a": "checked"}"#,
                br#"{"a": "checked","checked":true}"#,
            ),
            (br#"{"checked":0}"#, br#"{"checked":true}"#),
            (br#"{"s":"a"b"}"#, br#"{"s":"a"b","checked":true}"#),
        ] {
            assert_eq!(
                p.apply(src, &[]).unwrap(),
                want,
                "{}",
                String::from_utf8_lossy(src)
            );
        }
        assert_eq!(
            p.apply(br#"{"ts":1,"a":2}"#, &[("ts", "7")]).unwrap(),
            br#"{"ts":7,"a":2,"checked":true}"#
        );
        for bad in [&b"[1]"[..], b"", b"  ", b"{", b"}", b"{\"a\":1"] {
            assert!(p.apply(bad, &[]).unwrap_err().is_poison());
        }
    }

    #[test]
    fn long_strings_and_deep_nesting() {
        // Quotes and escapes on both sides of eight-byte steps.
        for n in 0..20 {
            let pad = "y".repeat(n);
            let src = format!(r#"{{"{pad}k\"{pad}":"{pad}\\","v":"{pad}"}}"#);
            assert_eq!(
                find(src.as_bytes(), "v").unwrap(),
                Some(format!("\"{pad}\"").as_str())
            );
            assert_eq!(
                Object::parse(src.as_bytes()).unwrap().names().next(),
                Some(format!("{pad}k\"{pad}").as_str())
            );
        }
        let deep = |n: usize| format!(r#"{{"a":{}1{},"b":2}}"#, "[".repeat(n), "]".repeat(n));
        assert_eq!(find(deep(128).as_bytes(), "b").unwrap(), Some("2"));
        assert!(find(deep(129).as_bytes(), "b").unwrap_err().is_poison());
        assert!(find(br#"{"a":[{]},"b":2}"#, "b").unwrap_err().is_poison());
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
