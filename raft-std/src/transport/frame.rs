//! Frames after the handshake: `len u32 LE | payload`, with `1 <= len <= max_frame_bytes`.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};

/// Bytes in a frame header.
pub(super) const HEADER_LEN: usize = 4;

/// Why no frame could be read.
#[derive(Debug)]
pub(super) enum FrameError {
    /// The peer closed the connection cleanly, between two frames.
    Closed,
    /// The header announced an empty frame, which no sender produces.
    Empty,
    /// The header announced more than the maximum; nothing was allocated for it.
    TooLarge {
        /// The announced length.
        len: u32,
    },
    /// The socket failed, or closed in the middle of a frame.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => f.write_str("closed by the peer"),
            FrameError::Empty => f.write_str("frame of length 0"),
            FrameError::TooLarge { len } => write!(f, "frame of {len} bytes is over the maximum"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The header for a payload of `len` bytes. The caller has checked `len` against the maximum,
/// which is at most `u32::MAX` (checked when the transport starts), so the cast cannot truncate.
pub(super) fn header(len: usize) -> [u8; HEADER_LEN] {
    debug_assert!(len > 0 && u32::try_from(len).is_ok());
    (len as u32).to_le_bytes()
}

/// Writes one frame (header, then payload) into `out`, which is normally buffered.
pub(super) fn write_frame<W: Write>(out: &mut W, payload: &[u8]) -> io::Result<()> {
    out.write_all(&header(payload.len()))?;
    out.write_all(payload)
}

/// Reads one frame. The announced length is checked against `max` before any buffer is
/// allocated, so a hostile or corrupt header costs nothing but the connection.
pub(super) fn read_frame<R: Read>(input: &mut R, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut head = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match input.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => {
                return Err(FrameError::Io(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed in the middle of a frame header",
                )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_le_bytes(head);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    // On a 16-bit target a u32 may not fit a usize; treat that as too large, not a panic.
    let n = match usize::try_from(len) {
        Ok(n) if n <= max => n,
        _ => return Err(FrameError::TooLarge { len }),
    };
    let mut payload = vec![0u8; n];
    input.read_exact(&mut payload).map_err(FrameError::Io)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            write_frame(&mut out, f).expect("writing to a Vec cannot fail");
        }
        out
    }

    #[test]
    fn header_is_little_endian_length() {
        assert_eq!(encoded(&[b"abc"]), [3, 0, 0, 0, b'a', b'b', b'c']);
        assert_eq!(header(0x0102_0304), [4, 3, 2, 1]);
    }

    #[test]
    fn frames_round_trip_then_clean_close() {
        let bytes = encoded(&[b"one", b"two!", &[7u8; 1000]]);
        let mut input = &bytes[..];
        assert_eq!(read_frame(&mut input, 1000).expect("frame 1"), b"one");
        assert_eq!(read_frame(&mut input, 1000).expect("frame 2"), b"two!");
        assert_eq!(
            read_frame(&mut input, 1000).expect("frame 3"),
            vec![7u8; 1000]
        );
        assert!(matches!(
            read_frame(&mut input, 1000),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        // Announces 4 GiB - 1: refused from the header alone.
        let mut input = &[0xff, 0xff, 0xff, 0xff][..];
        assert!(matches!(
            read_frame(&mut input, 4 << 20),
            Err(FrameError::TooLarge { len: u32::MAX })
        ));
        let bytes = encoded(&[&[1u8; 11]]);
        assert!(matches!(
            read_frame(&mut &bytes[..], 10),
            Err(FrameError::TooLarge { len: 11 })
        ));
    }

    #[test]
    fn empty_frame_is_refused() {
        let mut input = &[0, 0, 0, 0, 1][..];
        assert!(matches!(read_frame(&mut input, 10), Err(FrameError::Empty)));
    }

    #[test]
    fn truncation_is_an_error_not_a_clean_close() {
        let bytes = encoded(&[b"hello"]);
        for cut in 1..bytes.len() {
            let mut input = &bytes[..cut];
            match read_frame(&mut input, 100) {
                Err(FrameError::Io(e)) => assert_eq!(e.kind(), ErrorKind::UnexpectedEof),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }
}
