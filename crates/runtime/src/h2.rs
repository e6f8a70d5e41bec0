//! HTTP/2 frames seen in passing: the frame headers on one direction of a connection, read
//! from the bytes as they go by, without decoding anything else. The server's keepalive
//! enforcement ([`crate::server::keepalive`]) watches a client's PINGs with it, and a client's
//! connections ([`crate::client`]) watch for a server's GOAWAY "too_many_pings" (gRFC A8).

/// What a client sends before its first frame.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADER_LEN: usize = 9;
pub(crate) const DATA: u8 = 0;
pub(crate) const HEADERS: u8 = 1;
pub(crate) const RST_STREAM: u8 = 3;
pub(crate) const PING: u8 = 6;
pub(crate) const GOAWAY: u8 = 7;
pub(crate) const END_STREAM: u8 = 0x1;
const PADDED: u8 = 0x8;
pub(crate) const ACK: u8 = 0x1;
pub(crate) const ENHANCE_YOUR_CALM: u32 = 0xb;
/// The error code for a transport that is not secure enough: a client without TLS at a server
/// that requires it.
pub(crate) const INADEQUATE_SECURITY: u32 = 0xc;
/// A SETTINGS frame with no settings: what a server sends first.
pub(crate) const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
/// The debug data of a GOAWAY that says a client pings too often.
pub(crate) const TOO_MANY_PINGS: &[u8] = b"too_many_pings";
/// How much of a kept frame's payload is kept: a GOAWAY's last stream and code, and its debug
/// data up to this.
const KEPT: usize = 64;

/// A frame header seen on one direction of the connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) stream: u32,
}

/// Finds frame headers in one direction's bytes as they pass; for one kind of frame, it also
/// keeps the start of the payload.
#[derive(Debug)]
pub(crate) struct Framer {
    /// Bytes still to skip: the preface, then each frame's payload.
    skip: usize,
    header: [u8; HEADER_LEN],
    filled: usize,
    keep: Option<u8>,
    /// A kept frame whose payload is being collected, and how many bytes are still wanted.
    collecting: Option<(Frame, usize)>,
    payload: Vec<u8>,
    /// A DATA frame whose data is passing: its stream, and what is left of its data and of the
    /// padding after it (`None` until a padded frame's pad length byte is read).
    data: Option<Data>,
}

#[derive(Debug, Clone, Copy)]
struct Data {
    frame: Frame,
    left: usize,
    padding: Option<usize>,
}

impl Framer {
    /// A framer that first skips `preface` bytes.
    pub(crate) fn new(preface: usize) -> Self {
        Self {
            skip: preface,
            header: [0; HEADER_LEN],
            filled: 0,
            keep: None,
            collecting: None,
            payload: Vec::new(),
            data: None,
        }
    }

    /// Also hands over the payload (its first 64 bytes) of frames of `kind`.
    pub(crate) fn keeping(mut self, kind: u8) -> Self {
        self.keep = Some(kind);
        self
    }

    /// Whether the bytes so far end exactly at a frame boundary.
    pub(crate) fn at_boundary(&self) -> bool {
        self.skip == 0 && self.filled == 0 && self.collecting.is_none() && self.data.is_none()
    }

    /// Feeds `bytes`, calling `seen` for each complete frame header, with the payload if its
    /// kind is kept (else empty); a DATA frame is seen once its data has passed.
    pub(crate) fn feed(&mut self, bytes: &[u8], seen: impl FnMut(Frame, &[u8])) {
        self.feed_with_data(bytes, seen, |_, _| {});
    }

    /// [`feed`](Self::feed), also handing `data` each piece of a DATA frame's data (padding left
    /// out) with its stream, as it passes.
    pub(crate) fn feed_with_data(
        &mut self,
        mut bytes: &[u8],
        mut seen: impl FnMut(Frame, &[u8]),
        mut data: impl FnMut(u32, &[u8]),
    ) {
        while !bytes.is_empty() {
            if let Some(d) = &mut self.data {
                bytes = Self::pass_data(d, bytes, &mut data);
                if d.left == 0 && d.padding == Some(0) {
                    let frame = d.frame;
                    self.data = None;
                    seen(frame, &[]);
                }
                continue;
            }
            if let Some((frame, wanted)) = &mut self.collecting {
                let n = (*wanted).min(bytes.len());
                self.payload.extend_from_slice(&bytes[..n]);
                *wanted -= n;
                bytes = &bytes[n..];
                if *wanted == 0 {
                    seen(*frame, &self.payload);
                    self.payload.clear();
                    self.collecting = None;
                }
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.filled == 0
                && let Some((header, rest)) = bytes.split_first_chunk::<HEADER_LEN>()
            {
                // A whole frame header here, the usual case: taken at once.
                self.header = *header;
                bytes = rest;
                self.header_complete(&mut seen);
                continue;
            }
            let n = (HEADER_LEN - self.filled).min(bytes.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == HEADER_LEN {
                self.filled = 0;
                self.header_complete(&mut seen);
            }
        }
    }

    /// Passes the front of `bytes` that belongs to the DATA frame `d`; returns the rest.
    fn pass_data<'a>(d: &mut Data, bytes: &'a [u8], data: &mut impl FnMut(u32, &[u8])) -> &'a [u8] {
        let Some(padding) = &mut d.padding else {
            // A padded frame's first byte is the pad length.
            d.padding = Some(usize::from(bytes[0]));
            d.left = d.left.saturating_sub(1 + usize::from(bytes[0]));
            return &bytes[1..];
        };
        if d.left > 0 {
            let n = d.left.min(bytes.len());
            data(d.frame.stream, &bytes[..n]);
            d.left -= n;
            return &bytes[n..];
        }
        let n = (*padding).min(bytes.len());
        *padding -= n;
        &bytes[n..]
    }

    fn header_complete(&mut self, seen: &mut impl FnMut(Frame, &[u8])) {
        let h = self.header;
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let frame = Frame {
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        };
        if self.keep == Some(frame.kind) && len > 0 {
            let kept = len.min(KEPT);
            self.collecting = Some((frame, kept));
            self.skip = len - kept;
            return;
        }
        if frame.kind == DATA && len > 0 {
            // Seen once its data has passed, so an END_STREAM comes after the data it ends.
            let padded = frame.flags & PADDED != 0;
            self.data = Some(Data {
                frame,
                left: len,
                padding: if padded { None } else { Some(0) },
            });
            return;
        }
        self.skip = len;
        seen(frame, &[]);
    }
}

/// A GOAWAY frame: `last_stream`, `code` and `debug` data.
pub(crate) fn goaway(last_stream: u32, code: u32, debug: &[u8]) -> Vec<u8> {
    let length = (8 + debug.len()) as u32;
    let mut frame = length.to_be_bytes()[1..].to_vec();
    frame.extend([GOAWAY, 0, 0, 0, 0, 0]);
    frame.extend(last_stream.to_be_bytes());
    frame.extend(code.to_be_bytes());
    frame.extend(debug);
    frame
}

/// Whether a GOAWAY's payload says ENHANCE_YOUR_CALM "too_many_pings".
pub(crate) fn is_too_many_pings(payload: &[u8]) -> bool {
    payload.len() >= 8
        && payload[4..8] == ENHANCE_YOUR_CALM.to_be_bytes()
        && &payload[8..] == TOO_MANY_PINGS
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn header(kind: u8, flags: u8, stream: u32, len: u32) -> Vec<u8> {
        let mut h = len.to_be_bytes()[1..].to_vec();
        h.extend([kind, flags]);
        h.extend(stream.to_be_bytes());
        h
    }

    #[test]
    fn frames_are_found_across_reads_of_any_size() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(header(HEADERS, 4, 1, 3));
        bytes.extend([1, 2, 3]);
        bytes.extend(header(PING, 0, 0, 8));
        bytes.extend([0; 8]);
        for chunk in [1, 2, 5, 100] {
            let mut framer = Framer::new(PREFACE.len());
            let mut seen = Vec::new();
            for piece in bytes.chunks(chunk) {
                framer.feed(piece, |f, _| seen.push((f.kind, f.stream)));
            }
            assert_eq!(seen, [(HEADERS, 1), (PING, 0)], "chunks of {chunk}");
            assert!(framer.at_boundary());
        }
    }

    #[test]
    fn a_kept_frame_comes_with_its_payload_and_long_debug_data_is_cut() {
        let mut bytes = header(PING, 0, 0, 8);
        bytes.extend([9; 8]);
        bytes.extend(goaway(5, ENHANCE_YOUR_CALM, TOO_MANY_PINGS));
        bytes.extend(goaway(7, 0, &[b'x'; 100]));
        bytes.extend(header(DATA, 1, 3, 2));
        bytes.extend([1, 2]);
        for chunk in [1, 3, 200] {
            let mut framer = Framer::new(0).keeping(GOAWAY);
            let mut seen = Vec::new();
            for piece in bytes.chunks(chunk) {
                framer.feed(piece, |f, payload| seen.push((f.kind, payload.to_vec())));
            }
            assert_eq!(seen.len(), 4, "chunks of {chunk}");
            assert_eq!(seen[0], (PING, vec![]), "a PING is not kept");
            assert!(is_too_many_pings(&seen[1].1));
            assert_eq!(seen[2].1.len(), 64, "the first 64 bytes are kept");
            assert!(!is_too_many_pings(&seen[2].1));
            assert_eq!(seen[3], (DATA, vec![]));
            assert!(framer.at_boundary());
        }
    }

    #[test]
    fn data_is_handed_over_without_its_padding() {
        let mut bytes = header(DATA, 0, 1, 3);
        bytes.extend(b"abc");
        bytes.extend(header(DATA, PADDED | END_STREAM, 3, 1 + 2 + 4));
        bytes.extend([4, b'd', b'e', 0, 0, 0, 0]);
        bytes.extend(header(PING, 0, 0, 8));
        bytes.extend([0; 8]);
        for chunk in [1, 2, 100] {
            let mut framer = Framer::new(0);
            let (mut kinds, mut data) = (Vec::new(), Vec::new());
            for piece in bytes.chunks(chunk) {
                framer.feed_with_data(
                    piece,
                    |f, _| kinds.push(f.kind),
                    |stream, d| data.extend(d.iter().map(|b| (stream, *b))),
                );
            }
            assert_eq!(kinds, [DATA, DATA, PING], "chunks of {chunk}");
            let expected = [(1, b'a'), (1, b'b'), (1, b'c'), (3, b'd'), (3, b'e')];
            assert_eq!(data, expected, "chunks of {chunk}");
            assert!(framer.at_boundary());
        }
    }

    #[test]
    fn a_data_frame_is_seen_after_its_data() {
        let mut bytes = header(DATA, END_STREAM, 1, 2);
        bytes.extend(b"ab");
        let events = std::cell::RefCell::new(Vec::new());
        Framer::new(0).feed_with_data(
            &bytes,
            |f, _| events.borrow_mut().push(format!("frame {}", f.kind)),
            |_, d| events.borrow_mut().push(format!("data {}", d.len())),
        );
        assert_eq!(events.into_inner(), ["data 2", "frame 0"]);
    }

    #[test]
    fn the_goaway_says_enhance_your_calm_too_many_pings() {
        let frame = goaway(7, ENHANCE_YOUR_CALM, TOO_MANY_PINGS);
        assert_eq!(&frame[..9], &header(GOAWAY, 0, 0, 22)[..]);
        assert_eq!(&frame[9..13], &7u32.to_be_bytes());
        assert!(is_too_many_pings(&frame[9..]));
        assert!(!is_too_many_pings(&goaway(7, 0, TOO_MANY_PINGS)[9..]));
    }
}
