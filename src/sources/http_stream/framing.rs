//! How a response body is delimited, and the decoding of its framing: chunked, a
//! `Content-Length`, or the upstream's close.

use super::SourceError;

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Chunked(Chunked),
    /// This many bytes remain.
    Length(u64),
    /// Everything until the upstream closes.
    Close,
}

/// Where a chunked body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    /// In a chunk-size line: the size so far, its digits, and whether an extension began.
    Size { size: u64, digits: u8, ext: bool },
    /// In a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data, before its line end (`cr`: the CR was seen).
    DataEnd { cr: bool },
    /// In the trailer section (`line_start`: nothing yet on this line).
    Trailer { line_start: bool },
    /// The last chunk and trailer are read.
    Done,
}

/// What the bytes at hand hold next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Payload: `len` bytes after skipping `skip` framing bytes.
    Data { skip: usize, len: usize },
    /// Only framing: every byte was used, more are needed.
    More,
    /// The body is complete.
    End,
}

impl Chunked {
    /// The state at the start of a chunk-size line.
    pub(super) const SIZE_LINE: Chunked = Chunked::Size {
        size: 0,
        digits: 0,
        ext: false,
    };

    /// Advances over `input`.
    fn step(&mut self, input: &[u8]) -> Result<Step, SourceError> {
        let invalid = || SourceError::Read("invalid chunked body".into());
        let plain = self.take_plain_framing(input);
        for (at, &byte) in input.iter().enumerate().skip(plain) {
            match self {
                Chunked::Size { size, digits, ext } => match byte {
                    b'\n' if *digits == 0 => return Err(invalid()),
                    b'\n' if *size == 0 => *self = Chunked::Trailer { line_start: true },
                    b'\n' => *self = Chunked::Data(*size),
                    _ if *ext || byte == b'\r' => {}
                    b';' | b' ' | b'\t' => *ext = true,
                    _ => {
                        let digit = (byte as char).to_digit(16).ok_or_else(invalid)?;
                        if *digits >= 15 {
                            return Err(invalid());
                        }
                        *size = *size * 16 + u64::from(digit);
                        *digits += 1;
                    }
                },
                Chunked::Data(left) => {
                    let len = (input.len() - at).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= len as u64;
                    if *left == 0 {
                        *self = Chunked::DataEnd { cr: false };
                    }
                    return Ok(Step::Data { skip: at, len });
                }
                Chunked::DataEnd { cr } => match byte {
                    b'\r' if !*cr => *cr = true,
                    b'\n' => *self = Chunked::SIZE_LINE,
                    _ => return Err(invalid()),
                },
                Chunked::Trailer { line_start } => match byte {
                    b'\n' if *line_start => {
                        *self = Chunked::Done;
                        return Ok(Step::End);
                    }
                    b'\n' => *line_start = true,
                    b'\r' => {}
                    _ => *line_start = false,
                },
                Chunked::Done => return Ok(Step::End),
            }
        }
        Ok(if *self == Chunked::Done {
            Step::End
        } else {
            Step::More
        })
    }

    /// Takes the framing between two chunks of data in its plain form — the CRLF after a
    /// chunk's data, then a size line of hex digits and CRLF — at the start of `input` in one
    /// step; the byte loop in [`Chunked::step`] takes anything else (extensions, bare LFs,
    /// the last chunk, a line cut by the read's end). Returns the bytes taken.
    fn take_plain_framing(&mut self, input: &[u8]) -> usize {
        let mut at = 0;
        if matches!(self, Chunked::DataEnd { cr: false }) && input.starts_with(b"\r\n") {
            *self = Chunked::SIZE_LINE;
            at = 2;
        }
        if !matches!(
            self,
            Chunked::Size {
                digits: 0,
                ext: false,
                ..
            }
        ) {
            return at;
        }
        let line = &input[at..];
        let (mut size, mut count) = (0u64, 0);
        // At most 15 digits, as the byte loop accepts.
        for &byte in line.iter().take(16) {
            let digit = match byte {
                b'0'..=b'9' => byte - b'0',
                b'a'..=b'f' => byte - b'a' + 10,
                b'A'..=b'F' => byte - b'A' + 10,
                _ => break,
            };
            size = size * 16 + u64::from(digit);
            count += 1;
        }
        if size == 0 || count > 15 || !line[count..].starts_with(b"\r\n") {
            return at;
        }
        *self = Chunked::Data(size);
        at + count + 2
    }
}

impl Framing {
    pub(super) fn step(&mut self, input: &[u8]) -> Result<Step, SourceError> {
        match self {
            Framing::Chunked(chunked) => chunked.step(input),
            Framing::Length(0) => Ok(Step::End),
            Framing::Length(left) => {
                let len = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= len as u64;
                Ok(if len == 0 {
                    Step::More
                } else {
                    Step::Data { skip: 0, len }
                })
            }
            Framing::Close if input.is_empty() => Ok(Step::More),
            Framing::Close => Ok(Step::Data {
                skip: 0,
                len: input.len(),
            }),
        }
    }

    /// Whether the upstream closing now ends the body cleanly.
    pub(super) fn ends_at_close(&self) -> bool {
        matches!(self, Framing::Close | Framing::Length(0))
    }
}
