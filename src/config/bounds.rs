//! Limits a configuration meets before the YAML parser sees it (SPEC §4): at most 4 MiB, no
//! NUL byte, UTF-8, nested at most 64 deep. Each is checked in one linear pass, so a
//! hostile or corrupt file (`/dev/zero`, 100 000 `[`, a 50 MiB scalar) is refused within
//! milliseconds and in memory bounded by the size limit, never by what the file contains.

use std::io::Read;
use std::path::Path;

use super::depth;
use super::issues::ConfigIssue;

/// The largest configuration file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// The deepest nesting accepted: every mapping and sequence counts, the top-level mapping
/// included. Real configurations nest about 6 deep.
pub const MAX_DEPTH: usize = 64;

/// Reads `path`, stopping one byte past [`MAX_FILE_BYTES`]: enough to tell that a file is
/// too large without reading the rest of it (or reading forever, for `/dev/zero`).
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The file's text, if it is small enough, free of NUL and UTF-8.
pub fn text(bytes: &[u8]) -> Result<&str, ConfigIssue> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(refused(None, "the file is larger than 4 MiB".to_string()));
    }
    if let Some(at) = memchr::memchr(0, bytes) {
        let reason = "contains a NUL byte".to_string();
        return Err(refused(Some(line_at(bytes, at)), reason));
    }
    std::str::from_utf8(bytes).map_err(|err| {
        let line = line_at(bytes, err.valid_up_to());
        refused(Some(line), "is not UTF-8 text".to_string())
    })
}

/// Checks configuration text against every limit: size, NUL and nesting depth.
pub fn check(text: &str) -> Result<(), ConfigIssue> {
    self::text(text.as_bytes())?;
    match depth::first_too_deep(text, MAX_DEPTH) {
        Some(at) => Err(refused(
            Some(at.line),
            format!(
                "nested deeper than {MAX_DEPTH} levels (column {})",
                at.column
            ),
        )),
        None => Ok(()),
    }
}

/// The 1-based line of byte `offset`.
fn line_at(bytes: &[u8], offset: usize) -> usize {
    memchr::memchr_iter(b'\n', &bytes[..offset]).count() + 1
}

fn refused(line: Option<usize>, reason: String) -> ConfigIssue {
    ConfigIssue {
        path: String::new(),
        line,
        reason: format!("{reason}; refused before parsing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_nul_and_utf8_are_checked_with_their_line() {
        let big = vec![b'#'; MAX_FILE_BYTES + 1];
        let issue = text(&big).expect_err("too large");
        assert_eq!(issue.line, None);
        assert!(issue.reason.contains("larger than 4 MiB"), "{issue}");
        assert!(text(&big[..MAX_FILE_BYTES]).is_ok());

        let nul = text(b"a: 1\nb: x\0y\n").expect_err("NUL");
        assert_eq!((nul.line, nul.reason.contains("NUL")), (Some(2), true));
        let latin1 = text(b"a: 1\n\nb: caf\xe9\n").expect_err("not UTF-8");
        assert_eq!(latin1.line, Some(3));
    }

    #[test]
    fn depth_is_checked_with_line_and_column() {
        assert!(check("routes: [[1]]\n").is_ok());
        let deep = format!("a: 1\nroutes: {}\n", "[".repeat(100_000));
        let issue = check(&deep).expect_err("too deep");
        assert_eq!(issue.line, Some(2));
        assert!(
            issue.reason.contains("deeper than 64 levels (column 72)"),
            "{issue}"
        );
    }
}
