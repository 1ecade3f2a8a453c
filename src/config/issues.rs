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

/// The longest value an error message quotes, in characters (SPEC §4): a message about a
/// multi-megabyte scalar stays one readable line.
pub const QUOTED_CHARS: usize = 80;

impl ConfigIssue {
    /// The issue with every value its reason quotes cut to [`QUOTED_CHARS`].
    pub fn with_values_cut(self) -> ConfigIssue {
        ConfigIssue {
            reason: cut_quoted(&self.reason),
            ..self
        }
    }
}

/// `reason` with the inside of every `"…"`, `'…'` and `` `…` `` cut to [`QUOTED_CHARS`]
/// characters and marked with `…` — serde_yaml quotes values in `"` (escaping with `\`) and
/// names in backticks; our own messages quote values in `'`.
fn cut_quoted(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len().min(4 * QUOTED_CHARS));
    let mut chars = reason.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if matches!(c, '"' | '\'' | '`') {
            copy_quoted(&mut chars, c, &mut out);
        }
    }
    out
}

/// Copies a quoted value up to and including its closing `quote`, keeping at most
/// [`QUOTED_CHARS`] characters of it.
fn copy_quoted(chars: &mut std::str::Chars<'_>, quote: char, out: &mut String) {
    let mut kept = 0;
    let mut escaped = false;
    let mut cut = false;
    for c in chars.by_ref() {
        if c == quote && !escaped {
            if cut {
                out.push('…');
            }
            out.push(c);
            return;
        }
        escaped = quote == '"' && c == '\\' && !escaped;
        if kept < QUOTED_CHARS {
            out.push(c);
            kept += 1;
        } else {
            cut = true;
        }
    }
    if cut {
        out.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::cut_quoted;

    #[test]
    fn long_quoted_values_are_cut_to_80_characters() {
        let long = "é".repeat(1000);
        let message = format!("invalid type: string \"{long}\", expected `a` or '{long}'");
        let cut = cut_quoted(&message);
        let kept = "é".repeat(80);
        assert_eq!(
            cut,
            format!("invalid type: string \"{kept}…\", expected `a` or '{kept}…'")
        );
    }

    #[test]
    fn short_values_escapes_and_unterminated_quotes() {
        let short = r#"unknown field `shared`, expected "a\"b""#;
        assert_eq!(cut_quoted(short), short);
        let open = format!("'{}", "x".repeat(100));
        assert_eq!(cut_quoted(&open), format!("'{}…", "x".repeat(80)));
    }
}
