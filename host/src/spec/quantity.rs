//! Sizes and durations written with units in the pipeline file.

use super::raw::Quantity;

/// `65536`, `64KiB`, `64 MiB`, `1GB` (decimal) → bytes.
pub fn bytes(q: &Quantity) -> Result<u64, String> {
    scaled(
        q,
        &[
            ("", 1),
            ("b", 1),
            ("kb", 1_000),
            ("kib", 1 << 10),
            ("mb", 1_000_000),
            ("mib", 1 << 20),
            ("gb", 1_000_000_000),
            ("gib", 1 << 30),
        ],
        "a size such as 65536, 64KiB or 64MiB",
    )
}

/// `500`, `500ms`, `2s`, `1m` → milliseconds.
pub fn millis(q: &Quantity) -> Result<u64, String> {
    scaled(
        q,
        &[("", 1), ("ms", 1), ("s", 1000), ("m", 60_000)],
        "a duration such as 500ms or 2s",
    )
}

fn scaled(q: &Quantity, units: &[(&str, u64)], expected: &str) -> Result<u64, String> {
    let text = match q {
        Quantity::Number(n) => return Ok(*n),
        Quantity::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not {expected}"))?;
    let factor = units
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("`{text}` has an unknown unit; expected {expected}"))?;
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Quantity {
        Quantity::Text(s.into())
    }

    #[test]
    fn units() {
        assert_eq!(bytes(&t("64MiB")), Ok(64 << 20));
        assert_eq!(bytes(&t("64 mib")), Ok(64 << 20));
        assert_eq!(bytes(&Quantity::Number(10)), Ok(10));
        assert_eq!(millis(&t("2s")), Ok(2000));
        assert_eq!(millis(&t("250ms")), Ok(250));
        assert!(
            bytes(&t("64 parsecs"))
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(millis(&t("fast")).is_err());
    }
}
