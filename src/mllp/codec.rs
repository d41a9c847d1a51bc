//! MLLP framing (HL7 v2's Minimal Lower Layer Protocol): each message travels as a block,
//! `0x0B` + the message's bytes + `0x1C 0x0D`. [`MllpCodec`] is a `tokio-util` codec that
//! scans forward through whatever the socket delivers: a block split over many reads, or
//! several blocks (and stray bytes between them) in one read, are normal. The message
//! bytes are handed on undecoded (MSH-18 decides their charset).
//!
//! A broken block never ends the stream: a block longer than the maximum frame size is
//! reported once ([`Block::Oversized`]) and skipped to its end; a block cut short by a new
//! start byte is reported ([`Block::Truncated`]) and the new block read. Bytes outside any
//! block are counted and dropped.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Start of a block (VT).
pub const START: u8 = 0x0B;
/// End of a block: FS then CR.
pub const END: [u8; 2] = [0x1C, 0x0D];

/// What the decoder read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// A whole message, its bytes as sent.
    Message(Bytes),
    /// A block longer than the maximum: its first bytes (up to 64, for the dead letter's
    /// record) and its length so far; the rest up to its end is skipped.
    Oversized { seen: usize, head: Bytes },
    /// A block cut short by the start of another (the sender gave up on it): its bytes.
    Truncated(Bytes),
}

/// The MLLP codec: decodes [`Block`]s, encodes message bytes into a block.
#[derive(Debug, Clone)]
pub struct MllpCodec {
    max_frame: usize,
    state: State,
    /// Bytes dropped outside any block since the codec was made.
    stray: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between blocks: looking for a start byte.
    Between,
    /// In a block whose bytes are `buf[1..]`; `scanned` bytes of it have no end in them.
    In { scanned: usize },
    /// In an oversized block: dropping bytes up to its end.
    Skipping { seen: usize },
}

impl MllpCodec {
    /// A codec refusing blocks longer than `max_frame` bytes (the message, without the
    /// framing bytes).
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            state: State::Between,
            stray: 0,
        }
    }

    /// Bytes dropped outside any block so far.
    pub fn stray_bytes(&self) -> u64 {
        self.stray
    }
}

/// Where `0x1C 0x0D` starts in `bytes`, if it does.
fn find_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == END)
}

impl Decoder for MllpCodec {
    type Item = Block;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Block>, std::io::Error> {
        loop {
            match self.state {
                State::Between => {
                    let Some(start) = buf.iter().position(|&b| b == START) else {
                        self.stray += buf.len() as u64;
                        buf.clear();
                        return Ok(None);
                    };
                    self.stray += start as u64;
                    buf.advance(start);
                    self.state = State::In { scanned: 0 };
                }
                State::In { scanned } => {
                    let body = &buf[1..];
                    // Resume one byte early: the FS of an end may be the last byte seen.
                    let from = scanned.saturating_sub(1);
                    let end = find_end(&body[from..]).map(|i| i + from);
                    let restart = body[from..]
                        .iter()
                        .position(|&b| b == START)
                        .map(|i| i + from);
                    match (end, restart) {
                        (Some(e), r) if r.is_none_or(|r| e < r) => {
                            if e > self.max_frame {
                                let block = oversized(e, &body[..e.min(64)]);
                                buf.advance(1 + e + 2);
                                self.state = State::Between;
                                return Ok(Some(block));
                            }
                            buf.advance(1);
                            let message = buf.split_to(e).freeze();
                            buf.advance(2);
                            self.state = State::Between;
                            return Ok(Some(Block::Message(message)));
                        }
                        (_, Some(r)) => {
                            buf.advance(1);
                            let cut = buf.split_to(r).freeze();
                            self.state = State::In { scanned: 0 };
                            return Ok(Some(Block::Truncated(cut)));
                        }
                        _ => {
                            if body.len() > self.max_frame {
                                let seen = body.len();
                                let head = Bytes::copy_from_slice(&body[..64.min(seen)]);
                                // Keep a trailing FS: it may begin the end.
                                let keep = usize::from(body.last() == Some(&END[0]));
                                buf.advance(buf.len() - keep);
                                self.state = State::Skipping { seen };
                                return Ok(Some(Block::Oversized { seen, head }));
                            }
                            self.state = State::In {
                                scanned: body.len(),
                            };
                            return Ok(None);
                        }
                    }
                }
                State::Skipping { seen } => {
                    let end = find_end(buf);
                    let restart = buf.iter().position(|&b| b == START);
                    match (end, restart) {
                        (Some(e), r) if r.is_none_or(|r| e < r) => {
                            buf.advance(e + 2);
                            self.state = State::Between;
                        }
                        (_, Some(r)) => {
                            buf.advance(r);
                            self.state = State::Between;
                        }
                        _ => {
                            let keep = usize::from(buf.last() == Some(&END[0]));
                            let dropped = buf.len() - keep;
                            buf.advance(dropped);
                            self.state = State::Skipping {
                                seen: seen + dropped,
                            };
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Block>, std::io::Error> {
        match self.decode(buf)? {
            Some(block) => Ok(Some(block)),
            None => {
                // A block the peer never finished: reported, not silently dropped.
                let cut = match self.state {
                    State::In { .. } if buf.len() > 1 => {
                        Some(Block::Truncated(buf.split_off(1).freeze()))
                    }
                    _ => None,
                };
                buf.clear();
                self.state = State::Between;
                Ok(cut)
            }
        }
    }
}

fn oversized(seen: usize, head: &[u8]) -> Block {
    Block::Oversized {
        seen,
        head: Bytes::copy_from_slice(head),
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for MllpCodec {
    type Error = std::io::Error;

    fn encode(&mut self, message: T, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        let m = message.as_ref();
        dst.reserve(m.len() + 3);
        dst.put_u8(START);
        dst.put_slice(m);
        dst.put_slice(&END);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `wire` to a codec in pieces cut at `cuts`, then ends the stream.
    fn decode_in_pieces(wire: &[u8], cuts: &[usize], max: usize) -> Vec<Block> {
        let mut codec = MllpCodec::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.push(wire.len());
        points.sort_unstable();
        let mut at = 0;
        for p in points {
            buf.extend_from_slice(&wire[at..p]);
            at = p;
            while let Some(b) = codec.decode(&mut buf).unwrap() {
                out.push(b);
            }
        }
        while let Some(b) = codec.decode_eof(&mut buf).unwrap() {
            out.push(b);
        }
        out
    }

    fn frame(m: &[u8]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        MllpCodec::new(usize::MAX).encode(m, &mut dst).unwrap();
        dst.to_vec()
    }

    /// Message bytes: anything but the framing bytes (which HL7 text never holds).
    fn message() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            any::<u8>().prop_filter("no framing byte", |b| *b != START && *b != 0x1C),
            0..300,
        )
    }

    proptest! {
        /// Whatever the reads look like, and whatever stray bytes lie between blocks, the
        /// messages come out whole and in order.
        #[test]
        fn messages_survive_any_split_and_stray_bytes(
            messages in prop::collection::vec((message(), message()), 1..8),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut wire = Vec::new();
            for (m, stray) in &messages {
                wire.extend(stray);
                wire.extend(frame(m));
            }
            let got = decode_in_pieces(&wire, &cuts, 1 << 20);
            let want: Vec<Block> = messages
                .iter()
                .map(|(m, _)| Block::Message(Bytes::copy_from_slice(m)))
                .collect();
            prop_assert_eq!(got, want);
        }

        /// An oversized block is reported once and skipped; the blocks around it still
        /// come out, however the reads are cut.
        #[test]
        fn an_oversized_block_is_reported_once_and_skipped(
            before in message(),
            after in message(),
            extra in 1usize..200,
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let max = 300;
            let big = vec![b'x'; max + extra];
            let mut wire = frame(&before);
            wire.extend(frame(&big));
            wire.extend(frame(&after));
            let got = decode_in_pieces(&wire, &cuts, max);
            prop_assert_eq!(got.len(), 3, "{:?}", got);
            prop_assert_eq!(&got[0], &Block::Message(Bytes::copy_from_slice(&before)));
            let oversized = matches!(&got[1], Block::Oversized { seen, head } if *seen > max && head.len() == 64);
            prop_assert!(oversized, "{:?}", got[1]);
            prop_assert_eq!(&got[2], &Block::Message(Bytes::copy_from_slice(&after)));
        }
    }

    #[test]
    fn a_block_cut_short_by_a_new_start_is_reported_and_the_next_read() {
        let mut wire = vec![START];
        wire.extend(b"MSH|partial");
        wire.extend(frame(b"MSH|whole"));
        let got = decode_in_pieces(&wire, &[], 1024);
        assert_eq!(
            got,
            vec![
                Block::Truncated(Bytes::from_static(b"MSH|partial")),
                Block::Message(Bytes::from_static(b"MSH|whole")),
            ]
        );
    }

    #[test]
    fn a_block_the_peer_never_finished_is_reported_at_the_end() {
        let mut wire = frame(b"MSH|one");
        wire.push(START);
        wire.extend(b"MSH|two");
        let got = decode_in_pieces(&wire, &[3, 9], 1024);
        assert_eq!(
            got,
            vec![
                Block::Message(Bytes::from_static(b"MSH|one")),
                Block::Truncated(Bytes::from_static(b"MSH|two")),
            ]
        );
    }

    #[test]
    fn stray_bytes_are_counted() {
        let mut codec = MllpCodec::new(1024);
        let mut buf = BytesMut::from(&b"junk"[..]);
        buf.extend(frame(b"MSH|x"));
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Block::Message(Bytes::from_static(b"MSH|x")))
        );
        assert_eq!(codec.stray_bytes(), 4);
    }
}
