//! Sizes and durations written with units in the pipeline file, read by
//! well-kept crates: `parse-size` for sizes, `humantime` for durations.
//! This module only adapts them to weir's units (bytes, whole
//! milliseconds) and words their errors; the caller adds file, line and
//! column.

use std::time::Duration;

use super::raw::Quantity;

const SIZE_EXAMPLE: &str = "a size such as 65536, 64KiB or 64MiB";
const DURATION_EXAMPLE: &str = "a duration such as 500ms, 2s, 90s, 1h or 7d";

/// `65536`, `64KiB`, `64 MiB`, `1.5GiB`, `1GB` (decimal), `64k` → bytes.
/// Units are case-insensitive; `K`, `M`, `G` alone are decimal.
pub fn bytes(q: &Quantity) -> Result<u64, String> {
    let text = match q {
        Quantity::Number(n) => return Ok(*n),
        Quantity::Text(t) => t.trim(),
    };
    parse_size::parse_size(text).map_err(|e| match e {
        parse_size::Error::PosOverflow => format!("`{text}` is too large"),
        _ => format!("`{text}` is not {SIZE_EXAMPLE} (units: B, kB, KiB, MB, MiB, GB, GiB, ...)"),
    })
}

/// A plain count (`100`); a count has no unit.
pub fn count(q: &Quantity) -> Result<u64, String> {
    match q {
        Quantity::Number(n) => Ok(*n),
        Quantity::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| format!("`{t}` is not a whole number")),
    }
}

/// `500` (milliseconds), `500ms`, `2s`, `90s`, `1m`, `1h`, `7d`, `1h30m`,
/// `1.5s` → milliseconds. A capital `M` is refused: humantime reads it as
/// months, and next to `64M` meaning megabytes it is a trap.
pub fn millis(q: &Quantity) -> Result<u64, String> {
    let text = match q {
        Quantity::Number(n) => return Ok(*n),
        Quantity::Text(t) => t.trim(),
    };
    // Digits alone are milliseconds, as a plain number is.
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| format!("`{text}` is too large"));
    }
    if units(text).any(|u| u == "M") {
        return Err(format!(
            "`{text}`: `M` is not accepted as a unit of time (it would mean months); \
             use `m` for minutes, `ms` for milliseconds, or `months`"
        ));
    }
    let span: Duration = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not {DURATION_EXAMPLE}: {e}"))?;
    if !span.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!(
            "`{text}` is not a whole number of milliseconds, weir's smallest unit of time"
        ));
    }
    u64::try_from(span.as_millis()).map_err(|_| format!("`{text}` is too large"))
}

/// The unit words of a duration (`1h30m` → `h`, `m`).
fn units(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
        .filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Quantity {
        Quantity::Text(s.into())
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(&t("64MiB")), Ok(64 << 20));
        assert_eq!(bytes(&t("64 mib")), Ok(64 << 20));
        assert_eq!(bytes(&t(" 64KiB ")), Ok(64 << 10));
        assert_eq!(bytes(&t("1GB")), Ok(1_000_000_000));
        assert_eq!(bytes(&t("1.5GiB")), Ok(3 << 29));
        assert_eq!(bytes(&t("65536")), Ok(65536));
        assert_eq!(bytes(&Quantity::Number(10)), Ok(10));
        let unknown = bytes(&t("64 parsecs")).unwrap_err();
        assert!(unknown.contains("not a size such as"), "{unknown}");
        let huge = bytes(&t("20000000000000000000KiB")).unwrap_err();
        assert!(huge.contains("too large"), "{huge}");
    }

    #[test]
    fn durations() {
        assert_eq!(millis(&t("500ms")), Ok(500));
        assert_eq!(millis(&t("2s")), Ok(2000));
        assert_eq!(millis(&t("90s")), Ok(90_000));
        assert_eq!(millis(&t("1m")), Ok(60_000));
        assert_eq!(millis(&t("1h")), Ok(3_600_000));
        assert_eq!(millis(&t("7d")), Ok(7 * 86_400_000));
        assert_eq!(millis(&t("1h30m")), Ok(5_400_000));
        assert_eq!(millis(&t("1.5s")), Ok(1500));
        assert_eq!(millis(&t("250")), Ok(250));
        assert_eq!(millis(&Quantity::Number(10)), Ok(10));
        let unknown = millis(&t("fast")).unwrap_err();
        assert!(unknown.contains("not a duration such as"), "{unknown}");
        let unit = millis(&t("2 fortnights")).unwrap_err();
        assert!(unit.contains("unknown time unit"), "{unit}");
        let sub = millis(&t("1500us")).unwrap_err();
        assert!(sub.contains("whole number of milliseconds"), "{sub}");
        let huge = millis(&t("99999999999999999999h")).unwrap_err();
        assert!(huge.contains("not a duration"), "{huge}");
    }

    #[test]
    fn a_capital_m_is_refused_with_a_hint() {
        for text in ["2M", "1h 5M", "3 M"] {
            let e = millis(&t(text)).unwrap_err();
            assert!(
                e.contains("`M` is not accepted as a unit of time")
                    && e.contains("`m` for minutes")
                    && e.contains("`ms` for milliseconds"),
                "{text}: {e}"
            );
        }
        // Spelled out, months are what they say (humantime: 30.44 days).
        assert_eq!(millis(&t("1month")), Ok(2_630_016_000));
        assert_eq!(millis(&t("1min")), Ok(60_000));
    }
}
