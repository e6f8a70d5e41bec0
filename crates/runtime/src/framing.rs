//! gRPC's length-prefixed message framing (`[compressed flag:1][length:4 big-endian][message]`),
//! followed across the chunks of a body without copying: the size limit (`server::limits`)
//! reads each message's announced length from it, the metrics count messages with it, and a
//! service that must know which messages came compressed (the interop cases) reads the flags,
//! and the lean unary path (`server::unary`) reads and writes its one message with it.

/// The prefix of an uncompressed message of `len` bytes.
pub(crate) fn prefix(len: u32) -> [u8; 5] {
    let [a, b, c, d] = len.to_be_bytes();
    [0, a, b, c, d]
}

/// The message in `bytes`, if they hold exactly one whole uncompressed message and nothing else.
pub(crate) fn only_message(bytes: &[u8]) -> Option<&[u8]> {
    let (head, message) = bytes.split_first_chunk::<5>()?;
    let [flag, len @ ..] = *head;
    let whole = flag == 0 && usize::try_from(u32::from_be_bytes(len)).ok()? == message.len();
    whole.then_some(message)
}

/// A message announced larger than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Oversized {
    /// The announced length.
    pub(crate) len: usize,
    /// Where its prefix starts in the chunk being scanned.
    pub(crate) prefix_start: usize,
    /// The whole messages before it whose prefixes this chunk completed.
    pub(crate) before: usize,
}

/// Tracks gRPC message boundaries in a byte stream: `[flag:1][length:4 big-endian][payload]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameScanner(State);

#[derive(Debug, Clone, Copy)]
enum State {
    /// Reading a message prefix; `filled` of its 5 bytes seen so far.
    Prefix { bytes: [u8; 5], filled: usize },
    /// Skipping `remaining` payload bytes of the current message.
    Payload { remaining: usize },
}

impl Default for State {
    fn default() -> Self {
        State::Prefix {
            bytes: [0; 5],
            filled: 0,
        }
    }
}

impl FrameScanner {
    /// Advances over `chunk`, returning how many message prefixes it completed. For the first message over `limit` it returns its announced length
    /// and where its prefix starts in `chunk` (0 when the prefix began in an earlier chunk), so
    /// the messages before it can still be delivered.
    pub(crate) fn scan(&mut self, chunk: &[u8], limit: usize) -> Result<usize, Oversized> {
        self.scan_each(chunk, limit, |_| {})
    }

    /// Whether the bytes so far stop inside a message (its prefix or its payload).
    pub(crate) fn mid_message(&self) -> bool {
        !matches!(self.0, State::Prefix { filled: 0, .. })
    }

    /// Advances over `chunk`, calling `on_message` with the compressed flag of each message
    /// whose prefix it completes.
    pub fn flags(&mut self, chunk: &[u8], mut on_message: impl FnMut(bool)) {
        let _ = self.scan_each(chunk, usize::MAX, |flag| on_message(flag != 0));
    }

    fn scan_each(
        &mut self,
        chunk: &[u8],
        limit: usize,
        mut on_prefix: impl FnMut(u8),
    ) -> Result<usize, Oversized> {
        let mut pos = 0;
        let mut prefix_start = 0;
        let mut messages = 0;
        while pos < chunk.len() {
            if let (State::Prefix { filled: 0, .. }, Some(prefix)) =
                (&self.0, chunk.get(pos..pos + 5))
            {
                // A whole prefix in this chunk, the usual case: read in place, and the message
                // skipped in one step.
                let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
                if len > limit {
                    return Err(Oversized {
                        len,
                        prefix_start: pos,
                        before: messages,
                    });
                }
                messages += 1;
                on_prefix(prefix[0]);
                pos += 5;
                let here = len.min(chunk.len() - pos);
                pos += here;
                if here < len {
                    self.0 = State::Payload {
                        remaining: len - here,
                    };
                }
                continue;
            }
            match &mut self.0 {
                State::Prefix { bytes, filled } => {
                    // A prefix split across chunks.
                    if *filled == 0 {
                        prefix_start = pos;
                    }
                    let n = (5 - *filled).min(chunk.len() - pos);
                    bytes[*filled..*filled + n].copy_from_slice(&chunk[pos..pos + n]);
                    *filled += n;
                    pos += n;
                    if *filled == 5 {
                        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                        let len = len as usize;
                        if len > limit {
                            return Err(Oversized {
                                len,
                                prefix_start,
                                before: messages,
                            });
                        }
                        messages += 1;
                        on_prefix(bytes[0]);
                        self.0 = if len == 0 {
                            State::default()
                        } else {
                            State::Payload { remaining: len }
                        };
                    }
                }
                State::Payload { remaining } => {
                    let n = (*remaining).min(chunk.len() - pos);
                    *remaining -= n;
                    pos += n;
                    if *remaining == 0 {
                        self.0 = State::default();
                    }
                }
            }
        }
        Ok(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_whole_plain_message_is_a_message() {
        let message = [prefix(2).as_slice(), &[7, 8]].concat();
        assert_eq!(only_message(&message), Some(&[7, 8][..]));
        assert_eq!(
            only_message(&[prefix(0)[..].to_vec()].concat()),
            Some(&[][..])
        );
        let compressed = [[1, 0, 0, 0, 2].as_slice(), &[7, 8]].concat();
        let two = [message.clone(), message.clone()].concat();
        for other in [&message[..6], &[][..], &compressed, &two] {
            assert_eq!(only_message(other), None, "{other:?}");
        }
    }

    #[test]
    fn flags_come_once_per_message_in_order_however_the_bytes_are_split() {
        let stream = [
            &[1, 0, 0, 0, 2, 9, 9][..],
            &[0, 0, 0, 0, 0],
            &[1, 0, 0, 0, 1, 7],
        ]
        .concat();
        for split in 0..=stream.len() {
            let mut scanner = FrameScanner::default();
            let mut flags = Vec::new();
            scanner.flags(&stream[..split], |f| flags.push(f));
            scanner.flags(&stream[split..], |f| flags.push(f));
            assert_eq!(flags, [true, false, true], "split at {split}");
        }
    }
}
