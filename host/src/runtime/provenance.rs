//! Output provenance (issue 12): with `provenance: header` in the pipeline
//! file, every plugin step a record passes through adds one header
//!
//! ```text
//! weir.provenance: tag=sha256:5f0c6e1a...@v2
//! ```
//!
//! naming the step, the SHA-256 of the component that processed the record
//! (all 64 hex digits) and the step's version number (1 is the pipeline
//! file's, each swap or rollback adds one). Headers are added in the order
//! the steps processed the record, after the headers it already had, so a
//! record through several plugin steps carries one per step, in order, and
//! a step name with `=` or `@` in it still reads back unambiguously (the
//! digest part is fixed: split at the last `=sha256:`).
//!
//! With `provenance: off` (the default) nothing is added and headers pass
//! through unchanged; the task then never looks here.

use bytes::Bytes;

use crate::operators::versioned::VersionTag;

/// The header's name.
pub const HEADER: &str = "weir.provenance";

/// The header value for records processed by version `tag` of `step`:
/// made once per task and version, shared by every record it stamps.
pub fn stamp(step: &str, tag: &VersionTag) -> Bytes {
    Bytes::from(format!("{step}=sha256:{}@v{}", tag.digest, tag.number))
}

/// A provenance header value read back: step, digest (hex), version.
pub fn parse(value: &str) -> Option<(&str, &str, u32)> {
    let (step, rest) = value.rsplit_once("=sha256:")?;
    let (digest, number) = rest.split_once("@v")?;
    Some((step, digest, number.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_whatever_the_step_is_called() {
        let tag = VersionTag {
            number: 12,
            digest: "5f0c".repeat(16).into(),
        };
        for step in ["tag", "a=b@v3", "x=sha256:y"] {
            let value = stamp(step, &tag);
            let text = std::str::from_utf8(&value).unwrap();
            assert_eq!(parse(text), Some((step, &*tag.digest, 12)), "{text}");
        }
        assert_eq!(
            &stamp("tag", &tag)[..],
            format!("tag=sha256:{}@v12", "5f0c".repeat(16)).as_bytes()
        );
        assert_eq!(parse("tag"), None);
        assert_eq!(parse("tag=sha256:ab@vX"), None);
    }
}
