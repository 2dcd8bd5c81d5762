//! Numbers as the built-in aggregations see them: a JSON number read from
//! a field is a 64-bit integer when it is written as one and fits, any
//! other number a 64-bit float. Integer arithmetic that overflows is an
//! error (the record goes to the error policy), never a silent wrap; once
//! a float is involved the result is a float, as Java's `long + double` is.

use std::cmp::Ordering;

use bytes::BufMut;

/// A number read from a record or kept in an accumulator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// The number a JSON field holds (`raw`: the field's JSON text).
    /// `Err` says what the field holds instead, for a failure's reason.
    pub fn parse(raw: &[u8]) -> Result<Number, String> {
        let text = std::str::from_utf8(raw).map_err(|_| "is not a number".to_string())?;
        match raw.first() {
            Some(b'-' | b'0'..=b'9') => {}
            Some(b'"') => return Err(format!("is a string ({text}), not a number")),
            Some(b't' | b'f') => return Err(format!("is a boolean ({text}), not a number")),
            Some(b'n') => return Err("is null".to_string()),
            Some(b'{') => return Err("is an object, not a number".to_string()),
            Some(b'[') => return Err("is an array, not a number".to_string()),
            _ => return Err(format!("is not a number: {text}")),
        }
        let integral = !raw.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
        if integral && let Ok(i) = text.parse::<i64>() {
            return Ok(Number::Int(i));
        }
        text.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Number::Float)
            .ok_or_else(|| format!("is not a number weir can hold: {text}"))
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    /// `self + other`; integer overflow is an error.
    pub fn add(self, other: Number) -> Result<Number, String> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a
                .checked_add(b)
                .map(Number::Int)
                .ok_or_else(|| format!("the sum overflows a 64-bit integer ({a} + {b})")),
            (a, b) => Ok(Number::Float(a.as_f64() + b.as_f64())),
        }
    }

    /// `self - other` (a table aggregation taking a row's old value out);
    /// integer overflow is an error.
    pub fn sub(self, other: Number) -> Result<Number, String> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a
                .checked_sub(b)
                .map(Number::Int)
                .ok_or_else(|| format!("the sum overflows a 64-bit integer ({a} - {b})")),
            (a, b) => Ok(Number::Float(a.as_f64() - b.as_f64())),
        }
    }

    /// Numeric order across integers and floats.
    pub fn compare(self, other: Number) -> Ordering {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a.cmp(&b),
            (a, b) => a.as_f64().total_cmp(&b.as_f64()),
        }
    }

    /// The JSON text of the number: integers as digits, floats as the
    /// shortest text that reads back to the same float (`83.5`, `1e21`,
    /// `2.0`), so a float stays a float for a reader.
    pub fn write_json(self, out: &mut impl BufMut) {
        match self {
            Number::Int(i) => out.put_slice(itoa::Buffer::new().format(i).as_bytes()),
            Number::Float(f) => match serde_json::Number::from_f64(f) {
                Some(n) => out.put_slice(n.to_string().as_bytes()),
                // Finite by construction: parse and add keep it so, except
                // a sum that overflows f64, which JSON cannot say.
                None => out.put_slice(b"null"),
            },
        }
    }

    /// Fixed-size form in an accumulator: a tag byte and eight bytes.
    pub fn encode(self, out: &mut Vec<u8>) {
        match self {
            Number::Int(i) => {
                out.push(0);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Number::Float(f) => {
                out.push(1);
                out.extend_from_slice(&f.to_le_bytes());
            }
        }
    }

    /// Reads what [`Number::encode`] wrote at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Option<Number> {
        let eight: [u8; 8] = bytes.get(1..9)?.try_into().ok()?;
        match bytes[0] {
            0 => Some(Number::Int(i64::from_le_bytes(eight))),
            1 => Some(Number::Float(f64::from_le_bytes(eight))),
            _ => None,
        }
    }

    /// Bytes [`Number::encode`] writes.
    pub const ENCODED: usize = 9;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(n: Number) -> String {
        let mut out = Vec::new();
        n.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn integers_stay_integers_until_a_float_joins() {
        let a = Number::parse(b"120").unwrap();
        let b = Number::parse(b"-20").unwrap();
        assert_eq!(a.add(b).unwrap(), Number::Int(100));
        let c = Number::parse(b"0.5").unwrap();
        assert_eq!(a.add(c).unwrap(), Number::Float(120.5));
        assert_eq!(a.sub(b).unwrap(), Number::Int(140));
        assert_eq!(a.sub(c).unwrap(), Number::Float(119.5));
        assert!(Number::Int(i64::MIN).sub(Number::Int(1)).is_err());
        assert_eq!(json(Number::Float(2.0)), "2.0");
        assert_eq!(json(Number::Int(7)), "7");
        assert_eq!(Number::parse(b"1e3").unwrap(), Number::Float(1000.0));
        // Too big for i64: a float, as it is written.
        assert_eq!(
            Number::parse(b"18446744073709551616").unwrap(),
            Number::Float(18446744073709551616.0)
        );
    }

    #[test]
    fn overflow_and_non_numbers_are_errors_that_say_why() {
        let max = Number::Int(i64::MAX);
        assert!(max.add(Number::Int(1)).unwrap_err().contains("overflows"));
        assert!(Number::parse(b"\"12\"").unwrap_err().contains("string"));
        assert!(Number::parse(b"true").unwrap_err().contains("boolean"));
        assert!(Number::parse(b"{}").unwrap_err().contains("object"));
    }

    #[test]
    fn round_trips_and_orders_across_kinds() {
        for n in [Number::Int(-3), Number::Float(2.25)] {
            let mut buf = Vec::new();
            n.encode(&mut buf);
            assert_eq!(buf.len(), Number::ENCODED);
            assert_eq!(Number::decode(&buf), Some(n));
        }
        assert_eq!(Number::Int(2).compare(Number::Float(2.5)), Ordering::Less);
        assert_eq!(Number::Int(3).compare(Number::Int(3)), Ordering::Equal);
    }
}
