//! Strict JSON syntax checking (RFC 8259) in one pass, UTF-8 included.
//!
//! Every `json`-format key and value is checked where it enters weir, and
//! again where it leaves unless the format gate
//! ([`super::format_gate`]) knows it is still JSON, so this sits on the hot
//! path. serde_json's `IgnoredAny` plus a separate UTF-8 pass cost about 1.6
//! times as much on the ~100-byte values weir is built for (111.9 against
//! 70.4 ns, see `bench/README.md`):
//! this checker steps through strings eight bytes at a time and keeps its
//! nesting in a bit stack instead of recursing.
//!
//! It accepts what serde_json parses: any value at the top, at most
//! [`MAX_DEPTH`] levels of nesting, `\u` escapes not checked for surrogate
//! pairing (serde_json's own skipping does not check them either).

use std::ops::Range;

/// Deepest nesting accepted: what serde_json's default recursion limit (128)
/// lets through, so whatever passes here can be parsed by a plugin.
pub const MAX_DEPTH: usize = 127;

/// Where and why bytes are not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {offset}")]
pub struct SyntaxError {
    /// Zero-based byte offset of the offending byte (or the end).
    pub offset: usize,
    pub what: &'static str,
}

/// Checks that `bytes` are one JSON value, with optional whitespace around.
pub fn check(bytes: &[u8]) -> Result<(), SyntaxError> {
    let mut s = Scanner::new(bytes);
    s.skip_ws();
    s.value()?;
    s.skip_ws();
    if s.pos < bytes.len() {
        return Err(s.error("trailing characters after the JSON value"));
    }
    Ok(())
}

/// Whether `output` is the JSON object `input` (itself known to be JSON)
/// with zero or more members appended: `input` up to its closing brace, then
/// a valid continuation of that object. The usual enrichment map does just
/// this, and checking the appended part costs a comparison and a few bytes
/// instead of the whole value.
pub fn extends_object(input: &[u8], output: &[u8]) -> bool {
    let (Some(first), Some(last)) = (
        input.iter().position(|&c| !is_ws(c)),
        input.iter().rposition(|&c| !is_ws(c)),
    ) else {
        return false;
    };
    if input[first] != b'{' || input[last] != b'}' || first == last {
        return false;
    }
    let kept = &input[..last];
    if output.len() <= kept.len() || !output.starts_with(kept) {
        return false;
    }
    let empty = kept[first + 1..].iter().all(|&c| is_ws(c));
    let mut s = Scanner::new(&output[kept.len()..]);
    object_tail(&mut s, empty).is_ok() && {
        s.skip_ws();
        s.at_end()
    }
}

/// The rest of an object whose members so far were checked: `}` or, after
/// a comma (none when the object is still `empty`), more members.
fn object_tail(s: &mut Scanner<'_>, empty: bool) -> Result<(), Why> {
    s.skip_ws();
    if s.eat(b'}') {
        return Ok(());
    }
    if !empty && !s.eat(b',') {
        return Err(Why::ObjectNext);
    }
    loop {
        s.skip_ws();
        s.member_name()?;
        // The member sits one level inside the object.
        s.any_value(MAX_DEPTH - 1)?;
        s.skip_ws();
        if s.eat(b'}') {
            return Ok(());
        }
        if !s.eat(b',') {
            return Err(Why::ObjectNext);
        }
    }
}

/// JSON's insignificant whitespace.
#[inline(always)]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t')
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Why checking failed, kept to one byte so the hot path returns in a
/// register; turned into words only when reported.
#[derive(Debug, Clone, Copy)]
enum Why {
    Value,
    String,
    Unterminated,
    Control,
    Escape,
    Hex,
    Utf8,
    Number,
    Fraction,
    Exponent,
    Deep,
    Name,
    Colon,
    ObjectNext,
    ArrayNext,
}

impl Why {
    fn words(self) -> &'static str {
        match self {
            Why::Value => "expected a value",
            Why::String => "expected a string",
            Why::Unterminated => "unterminated string",
            Why::Control => "control character in a string",
            Why::Escape => "invalid escape",
            Why::Hex => "`\\u` needs four hex digits",
            Why::Utf8 => "invalid UTF-8",
            Why::Number => "invalid number",
            Why::Fraction => "expected a digit after the decimal point",
            Why::Exponent => "expected a digit in the exponent",
            Why::Deep => "nested too deeply",
            Why::Name => "expected a member name (a string)",
            Why::Colon => "expected `:`",
            Why::ObjectNext => "expected `,` or `}`",
            Why::ArrayNext => "expected `,` or `]`",
        }
    }
}

/// A checking cursor over JSON text: [`check`] for a whole value, or the
/// pieces ([`Scanner::string`], [`Scanner::value`]) for parsing a known
/// envelope such as a JSON-lines record without a second pass.
pub struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Scanner { bytes, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// An error at the current position.
    pub fn error(&self, what: &'static str) -> SyntaxError {
        SyntaxError {
            offset: self.pos,
            what,
        }
    }

    fn fail(&self, why: Why) -> SyntaxError {
        self.error(why.words())
    }

    #[inline(always)]
    pub fn skip_ws(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if b > b' ' || !is_ws(b) {
                break;
            }
            self.pos += 1;
        }
    }

    #[inline(always)]
    pub fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Consumes `byte` if it is next (no whitespace skipped).
    #[inline(always)]
    pub fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Checks one string starting at the cursor (at its `"`). Returns the
    /// span of its content between the quotes and whether it has escapes.
    pub fn string(&mut self) -> Result<(Range<usize>, bool), SyntaxError> {
        if !self.eat(b'"') {
            return Err(self.fail(Why::String));
        }
        let start = self.pos;
        match self.rest_of_string() {
            Ok(escaped) => Ok((start..self.pos - 1, escaped)),
            Err(why) => Err(self.fail(why)),
        }
    }

    /// The rest of a string after its opening quote, through the closing
    /// one; says whether it had escapes.
    #[inline(always)]
    fn rest_of_string(&mut self) -> Result<bool, Why> {
        let b = self.bytes;
        let mut escaped = false;
        loop {
            // Eight plain bytes at a time: none is a control character, a
            // quote, a backslash or part of a multi-byte character.
            while let Some(word) = b.get(self.pos..self.pos + 8) {
                let v = u64::from_le_bytes(word.try_into().expect("eight bytes"));
                let special = (v.wrapping_sub(LO * 0x20)
                    | (v ^ (LO * u64::from(b'"'))).wrapping_sub(LO)
                    | (v ^ (LO * u64::from(b'\\'))).wrapping_sub(LO)
                    | v)
                    & HI;
                if special != 0 {
                    // The lowest flagged byte is always a real one: borrows
                    // only carry upwards from it.
                    self.pos += special.trailing_zeros() as usize / 8;
                    break;
                }
                self.pos += 8;
            }
            let Some(&c) = b.get(self.pos) else {
                return Err(Why::Unterminated);
            };
            self.pos += 1;
            match c {
                b'"' => return Ok(escaped),
                b'\\' => {
                    escaped = true;
                    self.pos += escape_len(b, self.pos)?;
                }
                0..=0x1f => {
                    self.pos -= 1;
                    return Err(Why::Control);
                }
                0x80.. => {
                    self.pos -= 1;
                    self.pos += utf8_len(b, self.pos)?;
                }
                _ => {}
            }
        }
    }

    #[inline(always)]
    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    #[inline(always)]
    fn number(&mut self) -> Result<(), Why> {
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Why::Number),
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(Why::Fraction);
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(Why::Exponent);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn literal(&mut self, word: &'static [u8]) -> Result<(), Why> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Why::Value)
        }
    }

    /// Checks one value starting at the cursor (whitespace already skipped)
    /// and returns its span.
    pub fn value(&mut self) -> Result<Range<usize>, SyntaxError> {
        let start = self.pos;
        // Works on a local copy so the position stays in a register.
        let mut local = Scanner {
            bytes: self.bytes,
            pos: self.pos,
        };
        let result = local.any_value(MAX_DEPTH);
        self.pos = local.pos;
        match result {
            Ok(()) => Ok(start..self.pos),
            Err(why) => Err(self.fail(why)),
        }
    }

    /// Nesting is kept in a bit stack (1 = object) rather than recursion.
    #[inline(always)]
    fn any_value(&mut self, max_depth: usize) -> Result<(), Why> {
        let mut stack = [0u64; MAX_DEPTH.div_ceil(64)];
        let mut depth = 0usize;
        loop {
            // A value.
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    self.rest_of_string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(open @ (b'{' | b'[')) => {
                    if depth == max_depth {
                        return Err(Why::Deep);
                    }
                    let object = open == b'{';
                    let (word, bit) = (depth / 64, 1u64 << (depth % 64));
                    if object {
                        stack[word] |= bit;
                    } else {
                        stack[word] &= !bit;
                    }
                    depth += 1;
                    self.pos += 1;
                    self.skip_ws();
                    let close = if object { b'}' } else { b']' };
                    if !self.eat(close) {
                        if object {
                            self.member_name()?;
                        }
                        continue;
                    }
                    depth -= 1;
                }
                _ => return Err(Why::Value),
            }
            // After a value: a separator, or the end of one or more containers.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                self.skip_ws();
                let object = stack[(depth - 1) / 64] & (1 << ((depth - 1) % 64)) != 0;
                match (self.peek(), object) {
                    (Some(b','), _) => {
                        self.pos += 1;
                        self.skip_ws();
                        if object {
                            self.member_name()?;
                        }
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    (_, true) => return Err(Why::ObjectNext),
                    (_, false) => return Err(Why::ArrayNext),
                }
            }
        }
    }

    /// A member's name and its colon, leaving the cursor at its value.
    #[inline(always)]
    fn member_name(&mut self) -> Result<(), Why> {
        if !self.eat(b'"') {
            return Err(Why::Name);
        }
        self.rest_of_string()?;
        self.skip_ws();
        if !self.eat(b':') {
            return Err(Why::Colon);
        }
        self.skip_ws();
        Ok(())
    }
}

/// Bytes taken by the escape after the backslash at `b[i - 1]`.
#[cold]
fn escape_len(b: &[u8], i: usize) -> Result<usize, Why> {
    match b.get(i) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(1),
        Some(b'u') => {
            let hex = b.get(i + 1..i + 5);
            if hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                Ok(5)
            } else {
                Err(Why::Hex)
            }
        }
        _ => Err(Why::Escape),
    }
}

/// Width of the multi-byte UTF-8 character at `b[i]`, with the same rules as
/// `str::from_utf8` (no overlong forms, no surrogates, nothing past U+10FFFF).
#[cold]
fn utf8_len(b: &[u8], i: usize) -> Result<usize, Why> {
    let (width, low, high) = match b[i] {
        0xc2..=0xdf => (2, 0x80, 0xbf),
        0xe0 => (3, 0xa0, 0xbf),
        0xe1..=0xec | 0xee..=0xef => (3, 0x80, 0xbf),
        0xed => (3, 0x80, 0x9f),
        0xf0 => (4, 0x90, 0xbf),
        0xf1..=0xf3 => (4, 0x80, 0xbf),
        0xf4 => (4, 0x80, 0x8f),
        _ => return Err(Why::Utf8),
    };
    match b.get(i + 1..i + width) {
        Some([second, rest @ ..])
            if (low..=high).contains(second) && rest.iter().all(|&c| c & 0xc0 == 0x80) =>
        {
            Ok(width)
        }
        _ => Err(Why::Utf8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agrees with serde_json (and `str::from_utf8`) on what is JSON.
    fn agrees(text: &[u8]) {
        let serde_ok = std::str::from_utf8(text).is_ok()
            && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok();
        assert_eq!(
            check(text).is_ok(),
            serde_ok,
            "{:?}: {:?}",
            String::from_utf8_lossy(text),
            check(text)
        );
    }

    #[test]
    fn agrees_with_serde_json() {
        let cases: &[&[u8]] = &[
            b"{}",
            b"[]",
            b" { \"a\" : [ 1 , -2.5e+3 , true , false , null , \"x\" ] } ",
            br#"{"id":7,"customer":"c-00007","amount":512,"country":"DE","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
            br#"{"a":{"b":{"c":[[],[{}]]}}}"#,
            br#""esc \" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00""#,
            "\"caf\u{e9} \u{1f600} \u{10ffff}\"".as_bytes(),
            b"0",
            b"-0.0e0",
            b"01",
            b"1.",
            b".5",
            b"-",
            b"1e",
            b"+1",
            b"tru",
            b"nulll",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"[1,]",
            b"[1 2]",
            b"{1:2}",
            b"{\"a\":1]",
            b"[1}",
            b"\"unterminated",
            b"\"ctrl\x01\"",
            b"\"tab\tin string\"",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"\\u12g4\"",
            b"\"\xff\"",
            b"\"\xc0\xaf\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xf4\x90\x80\x80\"",
            b"\"\xe2\x82\"",
            b"\"\xe2\x82\xac\"",
            b"[1] [2]",
            b"",
            b"   ",
            b"\xff",
        ];
        for case in cases {
            agrees(case);
        }
        // Every prefix of a value with long strings, escapes and
        // multi-byte characters on both sides of eight-byte steps.
        let long = "{\"k\":\"abcdefghij\\\"klmnop\u{e9}qrstuvwxyz0123456789\",\"n\":[1.5,{\"x\":\"\u{1f600}abcdefgh\"}]}";
        for end in 0..=long.len() {
            agrees(&long.as_bytes()[..end]);
        }
    }

    /// serde_json's skipping has no depth limit but its parser has, and a
    /// plugin parses: the limit is the parser's.
    #[test]
    fn depth_limit_is_what_serde_json_can_parse() {
        for depth in [126, 127, 128, 5000] {
            for text in [
                format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
                format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)),
            ] {
                let parses = serde_json::from_str::<serde_json::Value>(&text).is_ok();
                assert_eq!(check(text.as_bytes()).is_ok(), parses, "depth {depth}");
                assert_eq!(parses, depth <= MAX_DEPTH);
            }
        }
    }

    /// Agrees with checking the whole output, for outputs that share the
    /// input's text up to its closing brace.
    #[test]
    fn appended_members_are_checked_as_a_whole_would_be() {
        let inputs: &[&[u8]] = &[b"{\"a\":1}", b" { \"a\" : [1,{}] } ", b"{}", b"{ }\n"];
        let tails: &[&[u8]] = &[
            b"}",
            b",\"b\":true}",
            b" , \"b\" : {\"c\":[1]} , \"d\":null } ",
            b"\"b\":1}",
            b",\"b\":}",
            b",\"b\":1",
            b",\"b\":1}}",
            b",}",
            b",\"b\":1} x",
            b",\"b\":\"\xff\"}",
        ];
        for input in inputs {
            let last = input.iter().rposition(|&c| c == b'}').unwrap();
            for tail in tails {
                let output = [&input[..last], tail].concat();
                assert_eq!(
                    extends_object(input, &output),
                    check(&output).is_ok(),
                    "{:?}",
                    String::from_utf8_lossy(&output)
                );
            }
        }
        // The depth limit counts the object the members are appended to.
        for (input, depth) in [(&b"{}"[..], 126), (b"{}", 127), (b"{\"x\":1}", 127)] {
            let last = input.len() - 1;
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let sep = if input == b"{}" { "" } else { "," };
            let output = [&input[..last], format!("{sep}\"a\":{nested}}}").as_bytes()].concat();
            assert_eq!(
                extends_object(input, &output),
                check(&output).is_ok(),
                "{depth}"
            );
            assert_eq!(check(&output).is_ok(), depth < MAX_DEPTH);
        }
        // Not an extension: a different prefix, a non-object, or no change
        // at all (equal bytes are for the caller to see).
        assert!(!extends_object(b"{\"a\":1}", b"{\"a\":2,\"b\":1}"));
        assert!(!extends_object(b"[1]", b"[1,2]"));
        assert!(!extends_object(b"{\"a\":1}", b"{\"a\":1"));
    }

    #[test]
    fn reports_where() {
        assert_eq!(
            check(b"{\"a\":1,}"),
            Err(SyntaxError {
                offset: 7,
                what: "expected a member name (a string)"
            })
        );
        let mut s = Scanner::new(b"[1, \"x\"] tail");
        assert_eq!(s.value(), Ok(0..8));
    }
}
