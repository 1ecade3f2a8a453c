//! The head parser and the body decoders, fed every split point.

use super::*;

fn decode(framing: &mut Framing, input: &[u8]) -> Result<(Vec<u8>, bool), SourceError> {
    let (mut out, mut at) = (Vec::new(), 0);
    loop {
        match framing.step(&input[at..])? {
            Step::Data { skip, len } => {
                out.extend_from_slice(&input[at + skip..at + skip + len]);
                at += skip + len;
            }
            Step::More => return Ok((out, false)),
            Step::End => return Ok((out, true)),
        }
    }
}

fn chunked() -> Framing {
    Framing::Chunked(Chunked::Size {
        size: 0,
        digits: 0,
        ext: false,
    })
}

#[test]
fn chunked_bodies_decode_split_at_every_byte() {
    // Plain size lines (upper and lower case hex) and ones with an extension.
    let body = b"5\r\nhello\r\n1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n1b\r\nABCDEFGHIJKLMNOPQRSTUVWXYZ!\r\n0\r\nX-T: 1\r\n\r\n";
    let whole = b"helloabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!".to_vec();
    for split in 0..=body.len() {
        let mut framing = chunked();
        let (mut out, done) = decode(&mut framing, &body[..split]).expect("valid");
        assert!(!done || split == body.len());
        let (rest, done) = decode(&mut framing, &body[split..]).expect("valid");
        out.extend(rest);
        assert!(done, "split {split}");
        assert_eq!(out, whole, "split {split}");
    }
}

#[test]
fn bare_line_feeds_are_accepted_and_garbage_is_not() {
    let mut framing = chunked();
    assert_eq!(
        decode(&mut framing, b"3\nabc\n0\n\n").expect("valid"),
        (b"abc".to_vec(), true)
    );
    assert!(decode(&mut chunked(), b"zz\r\n").is_err());
    assert!(decode(&mut chunked(), b"\r\n").is_err());
    assert!(decode(&mut chunked(), b"3\r\nabcX").is_err());
    assert!(decode(&mut chunked(), b"1000000000000000\r\n").is_err());
    assert!(decode(&mut chunked(), b"3\r\nabc\rX").is_err());
}

#[test]
fn plain_framing_between_chunks_is_taken_in_one_step() {
    let mut framing = chunked();
    let input = b"3\r\nabc\r\n4\r\ndefg\r\n";
    assert_eq!(
        framing.step(input).expect("valid"),
        Step::Data { skip: 3, len: 3 }
    );
    assert_eq!(
        framing.step(&input[6..]).expect("valid"),
        Step::Data { skip: 5, len: 4 }
    );
    assert_eq!(framing.step(&input[15..]).expect("valid"), Step::More);
    assert_eq!(framing, chunked(), "at the next size line");
}

#[test]
fn heads_choose_their_framing() {
    let head = |text: &str| {
        parse_head(text.as_bytes())
            .expect("valid")
            .expect("complete")
            .0
    };
    let sse = head("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(sse.status, 200);
    assert_eq!(sse.content_type.as_deref(), Some("text/event-stream"));
    assert!(matches!(sse.framing, Framing::Chunked(_)));
    assert_eq!(
        head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n").framing,
        Framing::Length(3)
    );
    assert_eq!(head("HTTP/1.0 200 OK\r\n\r\n").framing, Framing::Close);
    assert_eq!(
        head("HTTP/1.1 204 No Content\r\n\r\n").framing,
        Framing::Length(0)
    );
    assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: te")
        .expect("valid so far")
        .is_none());
    assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
}

#[test]
fn a_length_body_ends_after_its_bytes() {
    let mut framing = Framing::Length(3);
    assert_eq!(
        decode(&mut framing, b"abcdef").expect("valid"),
        (b"abc".to_vec(), true)
    );
    assert!(framing.ends_at_close());
}
