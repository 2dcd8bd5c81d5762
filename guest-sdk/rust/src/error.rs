use std::fmt;

/// Why one record could not be processed.
///
/// A *poison* error blames the record (malformed data): the pipeline's error
/// policy skips it, dead-letters it or stops. A *failed* error blames the
/// operator: the host starts a fresh instance, retries the record once, and
/// only then applies the error policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    poison: bool,
    message: String,
}

impl Error {
    /// The record is bad data.
    pub fn poison(message: impl Into<String>) -> Self {
        Error {
            poison: true,
            message: message.into(),
        }
    }

    /// The operator failed on a record that may well be fine.
    pub fn failed(message: impl Into<String>) -> Self {
        Error {
            poison: false,
            message: message.into(),
        }
    }

    /// Whether the record is to blame.
    pub fn is_poison(&self) -> bool {
        self.poison
    }

    /// The message the host records with the error.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.poison { "poison" } else { "failed" };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for Error {}

/// Data that does not parse is the record's fault.
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::poison(format!("invalid JSON: {e}"))
    }
}

impl From<std::str::Utf8Error> for Error {
    fn from(e: std::str::Utf8Error) -> Self {
        Error::poison(format!("invalid UTF-8: {e}"))
    }
}
