//! What can go wrong: a prices file that cannot be read or is invalid (a configuration error,
//! exit 78 at the CLI), or a workload that asks for something the prices file does not know
//! (a usage error, exit 2).

use std::fmt;
use std::path::PathBuf;

/// One problem in a prices file, displayed as `file:line: key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceError {
    /// The file (or `built-in prices`).
    pub file: String,
    /// 1-based line of the offending key, or of its table when the key is missing.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `platforms.fly.app.monthly`; empty for a syntax error at the top.
    pub key: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl fmt::Display for PriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a prices file (validation collects them all before failing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceErrors(pub Vec<PriceError>);

impl fmt::Display for PriceErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The prices file cannot be read.
    #[error("cannot read the prices file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The prices file is not valid TOML or does not fit the model.
    #[error("invalid prices file:\n{0}")]
    Prices(PriceErrors),
    /// A requested region is not a city of the prices file.
    #[error("unknown region code `{code}`; valid codes: {}", valid.join(", "))]
    UnknownRegion { code: String, valid: Vec<String> },
    /// No region was requested.
    #[error("no regions given: pass at least one region code, e.g. `--regions cdg`")]
    NoRegions,
    /// A workload number that cannot be planned for.
    #[error("{field} must be a finite number >= 0, got {value}")]
    InvalidWorkload { field: &'static str, value: f64 },
}
