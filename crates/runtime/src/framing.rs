//! gRPC's length-prefixed message framing (`[compressed flag:1][length:4 big-endian][message]`),
//! followed across the chunks of a body without copying: the size limit (`server::limits`)
//! reads each message's announced length from it, the metrics count messages with it.

/// A message announced larger than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Oversized {
    /// The announced length.
    pub(crate) len: usize,
    /// Where its prefix starts in the chunk being scanned.
    pub(crate) prefix_start: usize,
}

/// Tracks gRPC message boundaries in a byte stream: `[flag:1][length:4 big-endian][payload]`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FrameScanner {
    /// Reading a message prefix; `filled` of its 5 bytes seen so far.
    Prefix { bytes: [u8; 5], filled: usize },
    /// Skipping `remaining` payload bytes of the current message.
    Payload { remaining: usize },
}

impl Default for FrameScanner {
    fn default() -> Self {
        FrameScanner::Prefix {
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
        let mut pos = 0;
        let mut prefix_start = 0;
        let mut messages = 0;
        while pos < chunk.len() {
            match self {
                FrameScanner::Prefix { bytes, filled } => {
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
                            return Err(Oversized { len, prefix_start });
                        }
                        messages += 1;
                        *self = if len == 0 {
                            FrameScanner::default()
                        } else {
                            FrameScanner::Payload { remaining: len }
                        };
                    }
                }
                FrameScanner::Payload { remaining } => {
                    let n = (*remaining).min(chunk.len() - pos);
                    *remaining -= n;
                    pos += n;
                    if *remaining == 0 {
                        *self = FrameScanner::default();
                    }
                }
            }
        }
        Ok(messages)
    }
}
