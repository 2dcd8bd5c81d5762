//! The shape of a pipeline file, derived from the structs in `raw` (their
//! serde field names, enum variants and types), so that the file's fields
//! are listed in one place: a field added to a raw struct is known here
//! with nothing else to change.
//!
//! Derived by running each struct's own `Deserialize` against a tracing
//! deserializer (as `serde-reflection` does) that answers every request with
//! a placeholder and records what was asked: `deserialize_struct` names the
//! fields, `deserialize_enum` the variants, `deserialize_option` optional
//! values, `deserialize_any` hands over the type's own words for what it
//! expects. A field is required when the struct's `Deserialize` refuses
//! the struct without it.

use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::raw::RawPipeline;

/// What a place in the file holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A mapping with these fields; `name` is the Rust type's (`RawSource`).
    Struct {
        name: &'static str,
        fields: Vec<Field>,
    },
    /// A mapping of names the file chooses to values of one shape.
    Map(Box<Shape>),
    List(Box<Shape>),
    /// One of these words (a unit enum such as a kind).
    Choice(&'static [&'static str]),
    /// May be left out or `null`.
    Optional(Box<Shape>),
    Integer {
        signed: bool,
    },
    Number,
    Text,
    Bool,
    /// Checked by the type itself; in its own words (`a name or a list of
    /// names`).
    Any(String),
    /// Not yet traced (a placeholder while tracing).
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub shape: Shape,
    pub required: bool,
}

impl Shape {
    /// The shape without `Optional` around it.
    pub fn inner(&self) -> &Shape {
        match self {
            Shape::Optional(s) => s.inner(),
            s => s,
        }
    }

    /// The fields, for a struct.
    pub fn fields(&self) -> &[Field] {
        match self.inner() {
            Shape::Struct { fields, .. } => fields,
            _ => &[],
        }
    }

    /// What one of the struct's kind is called in messages: `RawSource` is
    /// a "source", `RawKafka` "kafka".
    pub fn noun(&self) -> String {
        match self.inner() {
            Shape::Struct { name, .. } => {
                let bare = name.strip_prefix("Raw").unwrap_or(name);
                let mut out = String::new();
                for (i, c) in bare.chars().enumerate() {
                    if c.is_uppercase() && i > 0 {
                        out.push(' ');
                    }
                    out.extend(c.to_lowercase());
                }
                out
            }
            _ => "value".into(),
        }
    }

    /// What the shape expects, for a message: "a mapping of source names to
    /// sources", "one of file | stdin | kafka".
    pub fn describe(&self) -> String {
        match self {
            Shape::Struct { fields, .. } => {
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                format!("a mapping with {}", names.join(", "))
            }
            Shape::Map(v) => match v.inner() {
                s @ Shape::Struct { .. } => {
                    let n = s.noun();
                    format!("a mapping of {n} names to {n}s")
                }
                other => format!("a mapping of names to {}", other.describe()),
            },
            Shape::List(v) => match v.inner() {
                s @ Shape::Struct { .. } => format!("a list of {}s", s.noun()),
                other => format!("a list of {}", other.describe()),
            },
            Shape::Choice(words) => format!("one of {}", words.join(" | ")),
            Shape::Optional(s) => s.describe(),
            Shape::Integer { signed: false } => "a whole number, 0 or more".into(),
            Shape::Integer { signed: true } => "a whole number".into(),
            Shape::Number => "a number".into(),
            Shape::Text => "text".into(),
            Shape::Bool => "true or false".into(),
            Shape::Any(expecting) => expecting.clone(),
            Shape::Unknown => "a value".into(),
        }
    }
}

/// The shape of a pipeline file (`None` if a raw type could not be traced,
/// which a unit test rules out; then only the typed deserialize checks).
pub fn pipeline() -> Option<&'static Shape> {
    static SHAPE: OnceLock<Option<Shape>> = OnceLock::new();
    SHAPE.get_or_init(|| trace::<RawPipeline>().ok()).as_ref()
}

/// Traces `T`'s shape, then which fields it requires.
pub fn trace<T: for<'de> Deserialize<'de>>() -> Result<Shape, TraceError> {
    let spanned = spanned_markers();
    let mut shape = Shape::Unknown;
    T::deserialize(Tracer::root(&mut shape, None, spanned))?;
    mark_required::<T>(&mut shape, "", spanned);
    Ok(shape)
}

/// A struct field is required when tracing without it fails for it.
fn mark_required<T: for<'de> Deserialize<'de>>(
    shape: &mut Shape,
    path: &str,
    spanned: SpannedMarkers,
) {
    match shape {
        Shape::Struct { fields, .. } => {
            for f in fields.iter_mut() {
                let sub = format!("{path}.{}", f.name);
                mark_required::<T>(&mut f.shape, &sub, spanned);
                if matches!(f.shape, Shape::Optional(_)) {
                    continue;
                }
                let r = T::deserialize(Tracer::root(
                    &mut Shape::Unknown,
                    Some((path, f.name)),
                    spanned,
                ));
                f.required = matches!(r, Err(TraceError::Missing(name)) if name == f.name);
            }
        }
        Shape::Map(v) => mark_required::<T>(v, &format!("{path}.*"), spanned),
        Shape::List(v) => mark_required::<T>(v, &format!("{path}[]"), spanned),
        Shape::Optional(v) => mark_required::<T>(v, path, spanned),
        _ => {}
    }
}

/// How `serde_saphyr::Spanned` finds its own deserializer: the newtype
/// name it asks for, and the marker key of the span-aware mapping the YAML
/// deserializer answers with (both the crate's private details, so they
/// are found by asking it rather than written here).
#[derive(Clone, Copy)]
struct SpannedMarkers {
    newtype: &'static str,
    key: &'static str,
}

fn spanned_markers() -> SpannedMarkers {
    static MARKERS: OnceLock<(&'static str, String)> = OnceLock::new();
    let (newtype, key) = MARKERS.get_or_init(|| {
        let newtype = newtype_probe();
        let key = serde_saphyr::from_str::<KeyProbe>("0").map_or(String::new(), |k| k.0);
        (newtype, key)
    });
    SpannedMarkers { newtype, key }
}

/// The name `Spanned` passes to `deserialize_newtype_struct`.
fn newtype_probe() -> &'static str {
    struct Probe<'a>(&'a mut &'static str);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = TraceError;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, TraceError> {
            Err(TraceError::Other("probe".into()))
        }
        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            _: V,
        ) -> Result<V::Value, TraceError> {
            *self.0 = name;
            Err(TraceError::Other("probe".into()))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct seq tuple
            tuple_struct map struct enum identifier ignored_any
        }
    }
    let mut name = "";
    let _ = serde_saphyr::Spanned::<u8>::deserialize(Probe(&mut name));
    name
}

/// Asks the YAML deserializer for a span as `Spanned` does and keeps the
/// first key of the mapping it answers with.
struct KeyProbe(String);

impl<'de> Deserialize<'de> for KeyProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Outer;
        impl<'de> Visitor<'de> for Outer {
            type Value = KeyProbe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a span")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<KeyProbe, D::Error> {
                d.deserialize_any(Inner)
            }
        }
        struct Inner;
        impl<'de> Visitor<'de> for Inner {
            type Value = KeyProbe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a span-aware mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyProbe, A::Error> {
                let first = map.next_key::<String>()?.unwrap_or_default();
                map.next_value::<de::IgnoredAny>()?;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "value" {
                        map.next_value::<de::IgnoredAny>()?;
                    } else {
                        map.next_value::<serde_saphyr::Location>()?;
                    }
                }
                Ok(KeyProbe(first))
            }
        }
        d.deserialize_newtype_struct(newtype_probe(), Outer)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceError {
    Missing(&'static str),
    Other(String),
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Missing(name) => write!(f, "missing field `{name}`"),
            TraceError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for TraceError {}

impl de::Error for TraceError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        TraceError::Other(msg.to_string())
    }
    fn missing_field(field: &'static str) -> Self {
        TraceError::Missing(field)
    }
}

/// Answers every request with a placeholder and records the shape asked
/// for into `out`. `path` names the place (`.sources.*.kind`) so that one
/// struct field can be left out (`omit`) to see whether it is required.
struct Tracer<'a> {
    out: &'a mut Shape,
    path: String,
    omit: Option<(&'a str, &'static str)>,
    spanned: SpannedMarkers,
}

impl<'a> Tracer<'a> {
    /// A tracer for a whole type, recording into `out`.
    fn root(
        out: &'a mut Shape,
        omit: Option<(&'a str, &'static str)>,
        spanned: SpannedMarkers,
    ) -> Self {
        Tracer {
            out,
            path: String::new(),
            omit,
            spanned,
        }
    }

    /// Traces the one place nested at `path` through `visit`, then records
    /// its shape as `wrap` makes it (a list of it, an optional one, ...).
    fn nest<R>(
        self,
        path: String,
        visit: impl FnOnce(Tracer<'_>) -> R,
        wrap: impl FnOnce(Shape) -> Shape,
    ) -> R {
        let mut inner = Shape::Unknown;
        let r = visit(self.context().tracer(&mut inner, path));
        *self.out = wrap(inner);
        r
    }
}

/// Traces a placeholder whose shape nobody keeps (a map's key, a span's
/// locations, a tuple's items).
fn placeholder<'de, T: DeserializeSeed<'de>>(seed: T) -> Result<T::Value, TraceError> {
    seed.deserialize(Tracer::root(&mut Shape::Unknown, None, spanned_markers()))
}

macro_rules! integers {
    ($($method:ident, $signed:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
            *self.out = Shape::Integer { signed: $signed };
            v.visit_u8(0)
        }
    )*};
}

impl<'de> Deserializer<'de> for Tracer<'_> {
    type Error = TraceError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Any(format!("{}", &v as &dyn de::Expected));
        v.visit_str("")
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Bool;
        v.visit_bool(false)
    }
    integers! {
        deserialize_i8, true; deserialize_i16, true; deserialize_i32, true;
        deserialize_i64, true; deserialize_i128, true;
        deserialize_u8, false; deserialize_u16, false; deserialize_u32, false;
        deserialize_u64, false; deserialize_u128, false;
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Number;
        v.visit_f32(0.0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Number;
        v.visit_f64(0.0)
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Text;
        v.visit_char('x')
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Text;
        v.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_str(v)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Text;
        v.visit_bytes(&[])
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_bytes(v)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        let path = self.path.clone();
        self.nest(path, |t| v.visit_some(t), |s| Shape::Optional(Box::new(s)))
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Any("nothing".into());
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_unit(v)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, TraceError> {
        if name != self.spanned.newtype {
            return v.visit_newtype_struct(self);
        }
        let path = self.path.clone();
        self.nest(path, |t| v.visit_newtype_struct(SpannedTracer(t)), |s| s)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        let path = format!("{}[]", self.path);
        self.nest(
            path,
            |t| v.visit_seq(OneItem(Some(t))),
            |s| Shape::List(Box::new(s)),
        )
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Any(format!("a list of {len}"));
        v.visit_seq(Placeholders(len))
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_tuple(len, v)
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        let path = format!("{}.*", self.path);
        self.nest(
            path,
            |t| {
                v.visit_map(OneEntry {
                    value: Some(t),
                    key_given: false,
                })
            },
            |s| Shape::Map(Box::new(s)),
        )
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, TraceError> {
        let omit = match self.omit {
            Some((path, field)) if path == self.path => Some(field),
            _ => None,
        };
        let mut shapes: Vec<Shape> = fields.iter().map(|_| Shape::Unknown).collect();
        let path = self.path.clone();
        let r = v.visit_map(StructFields {
            fields,
            shapes: &mut shapes,
            next: 0,
            omit,
            parent: self.context(),
            path,
        });
        *self.out = Shape::Struct {
            name,
            fields: fields
                .iter()
                .zip(shapes)
                .map(|(&name, shape)| Field {
                    name,
                    shape,
                    required: false,
                })
                .collect(),
        };
        r
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, TraceError> {
        *self.out = Shape::Choice(variants);
        v.visit_enum(FirstVariant(variants.first().copied().unwrap_or("")))
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_str(v)
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_unit()
    }
}

/// What a child tracer needs from its parent, without the borrow of `out`.
#[derive(Clone, Copy)]
struct Context<'a> {
    omit: Option<(&'a str, &'static str)>,
    spanned: SpannedMarkers,
}

impl<'a> Tracer<'a> {
    fn context(&self) -> Context<'a> {
        Context {
            omit: self.omit,
            spanned: self.spanned,
        }
    }
}

impl<'a> Context<'a> {
    fn tracer<'b>(self, out: &'b mut Shape, path: String) -> Tracer<'b>
    where
        'a: 'b,
    {
        Tracer {
            out,
            path,
            omit: self.omit,
            spanned: self.spanned,
        }
    }
}

/// Sees through `Spanned<T>`: answers its request for the span-aware form
/// with `T`'s value traced and placeholder locations.
struct SpannedTracer<'a>(Tracer<'a>);

impl<'de> Deserializer<'de> for SpannedTracer<'_> {
    type Error = TraceError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        let marker = self.0.spanned.key.to_string();
        v.visit_map(SpannedFields {
            marker,
            value: Some(self.0),
            next: 0,
        })
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct SpannedFields<'a> {
    marker: String,
    value: Option<Tracer<'a>>,
    next: usize,
}

impl<'de> MapAccess<'de> for SpannedFields<'_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        let key = match self.next {
            0 => self.marker.clone(),
            1 => "value".into(),
            2 => "referenced".into(),
            3 => "defined".into(),
            _ => return Ok(None),
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        self.next += 1;
        match (self.next, self.value.take()) {
            (2, Some(t)) => seed.deserialize(t),
            (n, t) => {
                if n < 2 {
                    self.value = t;
                }
                placeholder(seed)
            }
        }
    }
}

/// A list of one placeholder item.
struct OneItem<'a>(Option<Tracer<'a>>);

impl<'de> SeqAccess<'de> for OneItem<'_> {
    type Error = TraceError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TraceError> {
        match self.0.take() {
            Some(t) => seed.deserialize(t).map(Some),
            None => Ok(None),
        }
    }
}

/// A tuple of `n` placeholder items.
struct Placeholders(usize);

impl<'de> SeqAccess<'de> for Placeholders {
    type Error = TraceError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TraceError> {
        if self.0 == 0 {
            return Ok(None);
        }
        self.0 -= 1;
        placeholder(seed).map(Some)
    }
}

/// A mapping of one placeholder entry, keyed `""`.
struct OneEntry<'a> {
    value: Option<Tracer<'a>>,
    key_given: bool,
}

impl<'de> MapAccess<'de> for OneEntry<'_> {
    type Error = TraceError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        if self.key_given {
            return Ok(None);
        }
        self.key_given = true;
        placeholder(seed).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        let t = self
            .value
            .take()
            .ok_or_else(|| TraceError::Other("value asked twice".into()))?;
        seed.deserialize(t)
    }
}

/// A struct's fields, each given a placeholder value (but `omit`).
struct StructFields<'a, 's> {
    fields: &'static [&'static str],
    shapes: &'s mut [Shape],
    next: usize,
    omit: Option<&'static str>,
    parent: Context<'a>,
    path: String,
}

impl<'de> MapAccess<'de> for StructFields<'_, '_> {
    type Error = TraceError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        while self.next < self.fields.len() && Some(self.fields[self.next]) == self.omit {
            self.next += 1;
        }
        match self.fields.get(self.next) {
            Some(&name) => seed
                .deserialize(de::value::StrDeserializer::<TraceError>::new(name))
                .map(Some),
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        let i = self.next;
        self.next += 1;
        let path = format!("{}.{}", self.path, self.fields[i]);
        seed.deserialize(self.parent.tracer(&mut self.shapes[i], path))
    }
}

/// The first variant of an enum, as a unit (or newtype) variant.
struct FirstVariant(&'static str);

impl<'de> EnumAccess<'de> for FirstVariant {
    type Error = TraceError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), TraceError> {
        let v = seed.deserialize(de::value::StrDeserializer::<TraceError>::new(self.0))?;
        Ok((v, self))
    }
}

impl<'de> VariantAccess<'de> for FirstVariant {
    type Error = TraceError;
    fn unit_variant(self) -> Result<(), TraceError> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, TraceError> {
        placeholder(seed)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, TraceError> {
        Err(TraceError::Other("tuple variants are not traced".into()))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, TraceError> {
        Err(TraceError::Other("struct variants are not traced".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'s>(shape: &'s Shape, path: &[&str]) -> &'s Field {
        let mut at = shape;
        let mut found = None;
        for name in path {
            let f = at
                .inner()
                .fields()
                .iter()
                .find(|f| f.name == *name)
                .or_else(|| match at.inner() {
                    Shape::Map(v) | Shape::List(v) => {
                        v.inner().fields().iter().find(|f| f.name == *name)
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no field {name} in {at:?}"));
            at = &f.shape;
            found = Some(f);
        }
        found.unwrap()
    }

    #[test]
    fn the_pipeline_shape_is_traced_from_the_raw_structs() {
        let shape = pipeline().unwrap_or_else(|| panic!("{:?}", trace::<RawPipeline>()));
        let top: Vec<&str> = shape.fields().iter().map(|f| f.name).collect();
        assert!(
            top.starts_with(&[
                "name",
                "partitions",
                "threads",
                "batch-size",
                "error-policy"
            ]),
            "{top:?}"
        );
        let sources = field(shape, &["sources"]);
        assert!(!sources.required, "`sources` has a default");
        assert_eq!(
            sources.shape.describe(),
            "a mapping of source names to sources"
        );
        let kind = field(shape, &["sources", "kind"]);
        assert!(kind.required);
        assert_eq!(kind.shape.describe(), "one of file | stdin | kafka");
        assert!(!field(shape, &["sources", "path"]).required);
        assert_eq!(field(shape, &["steps"]).shape.describe(), "a list of steps");
        assert!(field(shape, &["steps", "name"]).required);
        assert_eq!(
            field(shape, &["steps", "from"]).shape.describe(),
            "a name or a list of names"
        );
        assert_eq!(
            field(shape, &["steps", "limits", "memory"])
                .shape
                .describe(),
            "a number or a number with a unit"
        );
        assert!(field(shape, &["plugins", "path"]).required);
        assert!(field(shape, &["sinks", "create", "partitions"]).required);
        assert_eq!(
            field(shape, &["partitions"]).shape.describe(),
            "a whole number, 0 or more"
        );
    }

    /// A field added to a raw struct is known to the check with no other
    /// change: nested structs, enums, `Spanned`, options and defaults.
    #[test]
    fn a_new_struct_is_traced_whole_and_checked_with_hints() {
        use serde_saphyr::Spanned;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        #[allow(dead_code)]
        struct RawSample {
            mode: Mode,
            key: Option<Spanned<RawKeyField>>,
            #[serde(default)]
            headers: Vec<Spanned<String>>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "kebab-case")]
        enum Mode {
            Truncate,
            Append,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct RawKeyField {
            field: Spanned<String>,
        }
        let shape = trace::<RawSample>().unwrap();
        let field = |name, shape, required| Field {
            name,
            shape,
            required,
        };
        assert_eq!(
            shape,
            Shape::Struct {
                name: "RawSample",
                fields: vec![
                    field("mode", Shape::Choice(&["truncate", "append"]), true),
                    field(
                        "key",
                        Shape::Optional(Box::new(Shape::Struct {
                            name: "RawKeyField",
                            fields: vec![field("field", Shape::Text, true)],
                        })),
                        false
                    ),
                    field("headers", Shape::List(Box::new(Shape::Text)), false),
                ],
            }
        );
        let tree = super::super::yaml_tree::parse(
            "mode: apend\nkey: { feld: user }\n",
            serde_saphyr::Options::default(),
        )
        .unwrap();
        let problems: Vec<String> = super::super::schema_check::check(&tree, &shape)
            .into_iter()
            .map(|(l, m)| format!("{}:{}: {m}", l.line, l.column))
            .collect();
        assert_eq!(
            problems,
            [
                "1:7: `mode` is `apend`, not one of truncate | append; did you mean `append`?",
                "2:8: `key` has no field `feld`; did you mean `field`?",
                "2:6: `key` needs `field` (text)",
            ]
        );
    }
}
