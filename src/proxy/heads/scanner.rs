//! Follows an HTTP/1.x request head byte by byte as it arrives, before pingora parses it:
//! where the head starts, whether its request line is well formed, and where it ends.
//!
//! pingora "repairs" a request line whose target holds a space or a control byte by
//! percent-encoding it (`GET /a b` is proxied as `/a%20b`), and keeps no trace of the
//! original. RFC 9112 §3 warns that such auto-correction lets a request past filters, and
//! nginx and HAProxy answer 400, so the raw line is judged here instead: exactly two spaces
//! (`method SP target SP version`) and no control byte but the CR of its CRLF.

/// Where the scanner is in the current head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing of the head yet (empty lines before a request line are skipped, as
    /// RFC 9112 §2.2 allows).
    Before,
    /// Inside the request line.
    RequestLine { spaces: u8, bad: bool, cr: bool },
    /// Inside the header fields; `empty` while the current line has no byte but CR.
    Fields { empty: bool },
    /// The blank line that ends the head has been read.
    Done,
}

/// The scanner of one connection's current request head.
#[derive(Debug, Clone)]
pub struct HeadScanner {
    state: State,
    started: bool,
    bad_request_line: bool,
}

impl Default for HeadScanner {
    fn default() -> Self {
        HeadScanner {
            state: State::Before,
            started: false,
            bad_request_line: false,
        }
    }
}

impl HeadScanner {
    /// Whether any byte of the head has arrived.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the whole head (up to its blank line) has arrived.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the request line broke the grammar (a space or control byte in the target, a
    /// missing part). Meaningful once the request line has ended.
    pub fn bad_request_line(&self) -> bool {
        self.bad_request_line
    }

    /// Follows `bytes`, the next bytes read from the connection; bytes after the end of the
    /// head (a body) are ignored.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.started = true;
        }
        for &byte in bytes {
            self.state = match self.state {
                State::Done => return,
                State::Before if byte == b'\r' || byte == b'\n' => State::Before,
                State::Before => self.request_line(0, false, false, byte),
                State::RequestLine { spaces, bad, cr } => self.request_line(spaces, bad, cr, byte),
                State::Fields { empty } => match byte {
                    b'\n' if empty => State::Done,
                    b'\n' => State::Fields { empty: true },
                    b'\r' => State::Fields { empty },
                    _ => State::Fields { empty: false },
                },
            };
        }
    }

    fn request_line(&mut self, spaces: u8, bad: bool, cr: bool, byte: u8) -> State {
        // A CR is allowed only right before the LF that ends the line.
        let bad = bad || (cr && byte != b'\n');
        match byte {
            b'\n' => {
                self.bad_request_line = bad || spaces != 2;
                State::Fields { empty: true }
            }
            b'\r' => State::RequestLine {
                spaces,
                bad,
                cr: true,
            },
            b' ' => State::RequestLine {
                spaces: spaces.saturating_add(1),
                bad,
                cr: false,
            },
            _ => State::RequestLine {
                spaces,
                bad: bad || byte < 0x20 || byte == 0x7f,
                cr: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HeadScanner;

    /// Feeds `head` whole and byte by byte: `(bad_request_line, done)`, which must agree.
    fn scan(head: &[u8]) -> (bool, bool) {
        let mut whole = HeadScanner::default();
        whole.feed(head);
        let mut bytes = HeadScanner::default();
        for byte in head {
            bytes.feed(std::slice::from_ref(byte));
        }
        let verdict = (whole.bad_request_line(), whole.done());
        assert_eq!((bytes.bad_request_line(), bytes.done()), verdict);
        verdict
    }

    #[test]
    fn well_formed_heads_pass() {
        assert_eq!(
            scan(b"GET /a%20b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            (false, true)
        );
        assert_eq!(scan(b"\r\n\r\nGET / HTTP/1.1\nHost: x\n\n"), (false, true));
        assert_eq!(scan(b"GET / HTTP/1.1\r\nHost: x\r\n"), (false, false));
    }

    #[test]
    fn spaces_and_control_bytes_in_the_request_line_are_bad() {
        for head in [
            &b"GET /api/a b HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /\r\nHost: x\r\n\r\n",
        ] {
            assert_eq!(scan(head), (true, true), "{head:?}");
        }
    }

    #[test]
    fn the_body_after_the_head_is_ignored() {
        let mut scanner = HeadScanner::default();
        assert!(!scanner.started());
        scanner.feed(b"POST / HTTP/1.1\r\nContent-Length: 20\r\n\r\nGET /a b HTTP/1.1\r\n");
        assert!(scanner.started() && scanner.done() && !scanner.bad_request_line());
    }
}
