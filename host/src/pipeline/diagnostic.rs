use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column in the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: u64,
    pub column: u64,
}

impl Loc {
    pub(crate) fn of(l: &serde_saphyr::Location) -> Loc {
        Loc {
            line: l.line(),
            column: l.column(),
        }
    }
}

/// One problem in a pipeline file: `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub loc: Option<Loc>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &Path, loc: Option<Loc>, message: String) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            loc,
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.loc {
            Some(Loc { line, column }) if line > 0 => {
                write!(
                    f,
                    "{}:{line}:{column}: {}",
                    self.file.display(),
                    self.message
                )
            }
            _ => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Everything wrong with a pipeline file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineError(pub Vec<Diagnostic>);

impl PipelineError {
    pub fn single(d: Diagnostic) -> Self {
        PipelineError(vec![d])
    }
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PipelineError {}
