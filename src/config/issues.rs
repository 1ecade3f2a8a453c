//! A problem in the file — its YAML path, line and reason — and the list validation
//! collects them in, so every problem is reported at once.

use std::fmt;

/// One problem in the file: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// YAML path such as `routes[2].poll.interval` (empty for the whole file).
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "{line}: ")?;
        } else {
            f.write_str(" ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.reason)
    }
}

/// Collects issues while the config is being resolved.
#[derive(Default)]
pub struct Issues(Vec<ConfigIssue>);

impl Issues {
    /// Records a problem at a YAML path.
    pub fn add(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            line: None,
            reason: reason.into(),
        });
    }

    /// Every problem recorded, or `Ok(())` when there is none.
    pub fn into_result(self) -> Result<(), Vec<ConfigIssue>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}
