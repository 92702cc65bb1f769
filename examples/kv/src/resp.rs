//! RESP2: an incremental request parser, a bounded request buffer, and reply writers. Nothing
//! here does I/O: the server reads and writes the socket.
//!
//! Requests are multibulk arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what every
//! client library sends) or inline lines (`PING\r\n`, what a person types into telnet), split
//! on whitespace with Redis's quoting rules. Every length is checked against
//! [`crate::limits`] before anything is allocated from it; bulk data is copied out of the read
//! buffer as it arrives, so a connection holds at most one request plus one read buffer.

use std::fmt;

use crate::limits::{
    MAX_ARRAY_LEN, MAX_BULK_BYTES, MAX_HEADER_LINE_BYTES, MAX_INLINE_BYTES, MAX_READ_BUFFER_BYTES,
    MAX_REQUEST_BYTES,
};

/// One request: its arguments, the command name first. Never empty.
pub type Args = Vec<Vec<u8>>;

/// Why a request was refused. The connection is closed after the error is sent, because the
/// parser cannot know where the next request starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// `*<n>` was not a number or exceeded [`MAX_ARRAY_LEN`].
    InvalidMultibulkLength,
    /// `$<n>` was not a number, was negative, or exceeded [`MAX_BULK_BYTES`].
    InvalidBulkLength,
    /// An array element did not start with `$`; the byte found instead.
    ExpectedBulk(u8),
    /// Bulk data was not followed by `\r\n`.
    MissingBulkTerminator,
    /// An inline line longer than [`MAX_INLINE_BYTES`].
    InlineTooLong,
    /// A quote was not closed, or was followed by something other than a space.
    UnbalancedQuotes,
    /// The declared lengths of one request add up to more than [`MAX_REQUEST_BYTES`].
    RequestTooLarge,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::ExpectedBulk(b) => {
                write!(f, "expected '$', got '{}'", printable(&[*b]))
            }
            ProtocolError::MissingBulkTerminator => f.write_str("expected CRLF after bulk data"),
            ProtocolError::InlineTooLong => f.write_str("too big inline request"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ProtocolError::RequestTooLarge => {
                write!(f, "request larger than {MAX_REQUEST_BYTES} bytes")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Where the parser is inside a multibulk request.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Between requests.
    Idle,
    /// Expecting the `$<len>` header of the next element.
    Header,
    /// Copying bulk data into the last argument; this many bytes are still to come.
    Bulk { left: usize },
    /// Expecting the `\r\n` after bulk data.
    BulkEnd,
}

/// An incremental RESP2 request parser. Feed it whatever bytes have arrived; it consumes what
/// it can and returns a request once one is complete. A partial header or inline line is left
/// unconsumed (the caller keeps it buffered); partial bulk data is consumed and held here.
///
/// Invariant: the bytes held (`held_bytes`) never exceed [`MAX_REQUEST_BYTES`], and the
/// unconsumed bytes a caller must keep never exceed [`MAX_READ_BUFFER_BYTES`].
#[derive(Debug)]
pub struct Parser {
    state: State,
    /// Elements the current multibulk request declared.
    expected: usize,
    args: Args,
    /// Bytes of the current request counted so far from its declared lengths.
    request_bytes: usize,
    /// How many unconsumed bytes are known to hold no `\n` while an inline line arrives, so
    /// that a line trickling in a byte at a time is not rescanned from its start each time.
    inline_scanned: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    /// A parser between requests.
    pub fn new() -> Parser {
        Parser {
            state: State::Idle,
            expected: 0,
            args: Vec::new(),
            request_bytes: 0,
            inline_scanned: 0,
        }
    }

    /// Bytes of argument data held for the request in progress.
    pub fn held_bytes(&self) -> usize {
        self.args.iter().map(Vec::len).sum()
    }

    /// Whether a request has been started and not finished.
    pub fn in_request(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Consumes bytes from the front of `buf`. Returns how many were consumed and the request
    /// completed by them, if any: at most one request per call, so call again with the rest.
    /// `(0, None)` means more input is needed.
    ///
    /// Bytes not consumed must be passed again, at the front of the next call, followed by
    /// whatever arrived since.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, Option<Args>), ProtocolError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                State::Idle => {
                    let Some(&first) = rest.first() else {
                        return Ok((pos, None));
                    };
                    if first == b'*' {
                        let Some((line, used)) = header_line(rest)? else {
                            return Ok((pos, None));
                        };
                        let n = parse_len(line).ok_or(ProtocolError::InvalidMultibulkLength)?;
                        pos += used;
                        if n <= 0 {
                            // Redis ignores `*0` and `*-1`: an empty request.
                            continue;
                        }
                        let n = usize::try_from(n)
                            .ok()
                            .filter(|&n| n <= MAX_ARRAY_LEN)
                            .ok_or(ProtocolError::InvalidMultibulkLength)?;
                        self.expected = n;
                        self.request_bytes = used;
                        // Grown as elements arrive: the count alone is not trusted with memory.
                        self.args = Vec::with_capacity(n.min(16));
                        self.state = State::Header;
                    } else {
                        let window = &rest[..rest.len().min(MAX_INLINE_BYTES + 2)];
                        let from = self.inline_scanned.min(window.len());
                        let Some(nl) = window[from..].iter().position(|&b| b == b'\n') else {
                            if rest.len() >= MAX_INLINE_BYTES + 2 {
                                return Err(ProtocolError::InlineTooLong);
                            }
                            self.inline_scanned = window.len();
                            return Ok((pos, None));
                        };
                        let nl = from + nl;
                        self.inline_scanned = 0;
                        let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
                        if line.len() > MAX_INLINE_BYTES {
                            return Err(ProtocolError::InlineTooLong);
                        }
                        pos += nl + 1;
                        let args = split_inline(line)?;
                        if !args.is_empty() {
                            return Ok((pos, Some(args)));
                        }
                    }
                }
                State::Header => {
                    let Some(&first) = rest.first() else {
                        return Ok((pos, None));
                    };
                    if first != b'$' {
                        return Err(ProtocolError::ExpectedBulk(first));
                    }
                    let Some((line, used)) = header_line(rest)? else {
                        return Ok((pos, None));
                    };
                    let len = parse_len(line)
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|&n| n <= MAX_BULK_BYTES)
                        .ok_or(ProtocolError::InvalidBulkLength)?;
                    self.request_bytes += used + len + 2;
                    if self.request_bytes > MAX_REQUEST_BYTES {
                        return Err(ProtocolError::RequestTooLarge);
                    }
                    pos += used;
                    // Capacity from a checked length, and capped: a client that declares a
                    // large value and sends nothing costs little.
                    self.args.push(Vec::with_capacity(len.min(64 * 1024)));
                    self.state = State::Bulk { left: len };
                }
                State::Bulk { left } => {
                    let take = left.min(rest.len());
                    if let Some(arg) = self.args.last_mut() {
                        arg.extend_from_slice(&rest[..take]);
                    }
                    pos += take;
                    if take < left {
                        self.state = State::Bulk { left: left - take };
                        return Ok((pos, None));
                    }
                    self.state = State::BulkEnd;
                }
                State::BulkEnd => {
                    match rest {
                        [b'\r', b'\n', ..] => pos += 2,
                        [] | [b'\r'] => return Ok((pos, None)),
                        _ => return Err(ProtocolError::MissingBulkTerminator),
                    }
                    if self.args.len() == self.expected {
                        self.state = State::Idle;
                        self.request_bytes = 0;
                        return Ok((pos, Some(std::mem::take(&mut self.args))));
                    }
                    self.state = State::Header;
                }
            }
        }
    }
}

/// The line at the front of `buf` (which starts with `*` or `$`) without its marker and
/// terminator, and the bytes it used; `None` if its `\n` has not arrived yet.
fn header_line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let too_long = match buf.first() {
        Some(b'*') => ProtocolError::InvalidMultibulkLength,
        _ => ProtocolError::InvalidBulkLength,
    };
    match buf
        .iter()
        .take(MAX_HEADER_LINE_BYTES)
        .position(|&b| b == b'\n')
    {
        Some(nl) => {
            let line = buf[1..nl].strip_suffix(b"\r").ok_or(too_long)?;
            Ok(Some((line, nl + 1)))
        }
        None if buf.len() >= MAX_HEADER_LINE_BYTES => Err(too_long),
        None => Ok(None),
    }
}

/// A decimal length as Redis writes it: an optional `-` and digits, nothing else.
fn parse_len(digits: &[u8]) -> Option<i64> {
    let (neg, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        n = n.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if neg { -n } else { n })
}

/// Splits an inline line into arguments like Redis's `sdssplitargs`: whitespace separates,
/// `"..."` takes `\n \r \t \b \a \\ \" \xHH` escapes, `'...'` takes `\'`, and a closing quote
/// must be followed by whitespace or the end.
fn split_inline(line: &[u8]) -> Result<Args, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    match line.get(i..) {
                        Some([b'\\', b'x', h, l, ..]) if hex(*h).is_some() && hex(*l).is_some() => {
                            arg.push(hex(*h).unwrap_or(0) << 4 | hex(*l).unwrap_or(0));
                            i += 4;
                        }
                        Some([b'\\', c, ..]) => {
                            arg.push(match c {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 0x08,
                                b'a' => 0x07,
                                other => *other,
                            });
                            i += 2;
                        }
                        Some([b'"', ..]) => {
                            i += 1;
                            break;
                        }
                        Some([c, ..]) => {
                            arg.push(*c);
                            i += 1;
                        }
                        _ => return Err(ProtocolError::UnbalancedQuotes),
                    }
                }
                if i < line.len() && !is_space(line[i]) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    match line.get(i..) {
                        Some([b'\\', b'\'', ..]) => {
                            arg.push(b'\'');
                            i += 2;
                        }
                        Some([b'\'', ..]) => {
                            i += 1;
                            break;
                        }
                        Some([c, ..]) => {
                            arg.push(*c);
                            i += 1;
                        }
                        _ => return Err(ProtocolError::UnbalancedQuotes),
                    }
                }
                if i < line.len() && !is_space(line[i]) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
            }
            _ => {
                while i < line.len() && !is_space(line[i]) {
                    arg.push(line[i]);
                    i += 1;
                }
            }
        }
        args.push(arg);
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Collects requests from a byte stream through a bounded buffer, without doing I/O itself:
/// the caller reads into [`read_buf`](RequestReader::read_buf), reports how much arrived with
/// [`filled`](RequestReader::filled), and takes requests with
/// [`next_request`](RequestReader::next_request) until it returns `None`. That is the moment to
/// send the replies, since no more requests are buffered (pipelined requests are answered in one
/// write), and then to wait for more input.
#[derive(Debug)]
pub struct RequestReader {
    /// Read into `buf[end..]`; `buf[start..end]` is not yet consumed by the parser.
    /// Invariant: `start <= end <= buf.len() <= MAX_READ_BUFFER_BYTES`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    parser: Parser,
}

/// What a read buffer starts at; it grows (to [`MAX_READ_BUFFER_BYTES`]) only for long inline
/// lines.
const INITIAL_READ_BUFFER_BYTES: usize = 16 * 1024;

impl Default for RequestReader {
    fn default() -> Self {
        RequestReader::new()
    }
}

impl RequestReader {
    /// A reader with nothing buffered.
    pub fn new() -> Self {
        RequestReader {
            buf: vec![0; INITIAL_READ_BUFFER_BYTES],
            start: 0,
            end: 0,
            parser: Parser::new(),
        }
    }

    /// The next complete request among the bytes received so far, or `None` if more bytes are
    /// needed. After an error the stream cannot be resynchronised: tell the client and close.
    pub fn next_request(&mut self) -> Result<Option<Args>, ProtocolError> {
        if self.start == self.end {
            return Ok(None);
        }
        // The parser consumes all it can before it asks for more, so one call is enough.
        let (used, request) = self.parser.feed(&self.buf[self.start..self.end])?;
        self.start += used;
        Ok(request)
    }

    /// Where the next bytes from the stream go: never empty. Makes room by moving the
    /// unconsumed bytes to the front, or by growing the buffer up to its bound.
    pub fn read_buf(&mut self) -> Result<&mut [u8], ProtocolError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_READ_BUFFER_BYTES {
                let len = (self.buf.len() * 2).min(MAX_READ_BUFFER_BYTES);
                self.buf.resize(len, 0);
            } else {
                // The parser refuses any line longer than the buffer before it fills, so this
                // is only reached if that invariant is broken; refuse the request rather than
                // grow.
                return Err(ProtocolError::InlineTooLong);
            }
        }
        Ok(&mut self.buf[self.end..])
    }

    /// Records that `n` bytes were read into the start of [`read_buf`](Self::read_buf).
    pub fn filled(&mut self, n: usize) {
        // A reader never reports more than the buffer it was given.
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Whether bytes have arrived that no request has consumed yet.
    pub fn has_buffered_input(&self) -> bool {
        self.start < self.end
    }

    /// Bytes this reader holds: its read buffer plus the parser's partial request.
    pub fn held_bytes(&self) -> usize {
        self.buf.len() + self.parser.held_bytes()
    }
}

// ----- replies -----

/// Appends `+<s>\r\n`. `s` must not contain CR or LF (a static string of ours).
pub fn write_simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `-<msg>\r\n`, where `msg` starts with its code (`ERR`, `TIMEOUT`, ...). CR and LF in
/// `msg` become spaces, since they would end the line early.
pub fn write_error(out: &mut Vec<u8>, msg: &str) {
    out.push(b'-');
    out.extend(
        msg.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// Appends `:<n>\r\n`.
pub fn write_integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `$<len>\r\n<data>\r\n`.
pub fn write_bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(data.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the nil bulk string `$-1\r\n`.
pub fn write_nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// Appends `*<len>\r\n`; the elements follow.
pub fn write_array_len(out: &mut Vec<u8>, len: usize) {
    out.push(b'*');
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Client bytes made safe for an error line or a log: printable ASCII kept, the rest as `\xHH`,
/// cut after 128 bytes of input.
pub fn printable(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(128) {
        if (0x20..0x7f).contains(&b) && b != b'\'' && b != b'\\' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    if bytes.len() > 128 {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// Parses all of `input` at once, collecting the requests.
    fn parse_all(input: &[u8]) -> Result<Vec<Args>, ProtocolError> {
        let mut p = Parser::new();
        let mut pos = 0;
        let mut out = Vec::new();
        loop {
            let (used, req) = p.feed(&input[pos..])?;
            pos += used;
            match req {
                Some(r) => out.push(r),
                None if used == 0 => return Ok(out),
                None => {}
            }
        }
    }

    #[test]
    fn multibulk_requests_parse() {
        let got = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n").expect("parses");
        assert_eq!(got, vec![args(&["GET", "k"]), args(&["PING"])]);
    }

    #[test]
    fn binary_data_and_empty_bulks_survive() {
        let got = parse_all(b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\n\r\n\0\xff\r\n").expect("parses");
        assert_eq!(
            got,
            vec![vec![b"SET".to_vec(), vec![], b"\r\n\0\xff".to_vec()]]
        );
    }

    #[test]
    fn empty_multibulk_is_ignored() {
        let got = parse_all(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n").expect("parses");
        assert_eq!(got, vec![args(&["PING"])]);
    }

    #[test]
    fn every_split_point_gives_the_same_requests() {
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\nPING hi\r\n";
        let whole = parse_all(input).expect("parses");
        for cut in 0..input.len() {
            let mut p = Parser::new();
            let mut buf = input[..cut].to_vec();
            let mut got = Vec::new();
            let mut fed_rest = false;
            loop {
                let (used, req) = p.feed(&buf).expect("parses");
                buf.drain(..used);
                if let Some(r) = req {
                    got.push(r);
                } else if used == 0 {
                    if fed_rest {
                        break;
                    }
                    buf.extend_from_slice(&input[cut..]);
                    fed_rest = true;
                }
            }
            assert_eq!(got, whole, "split at {cut}");
        }
    }

    #[test]
    fn inline_commands_split_like_redis() {
        let got =
            parse_all(b"PING\r\nset  k \"a b\\x41\\n\"\n  \r\nECHO 'it\\'s'\r\n").expect("parses");
        assert_eq!(
            got,
            vec![
                args(&["PING"]),
                args(&["set", "k", "a bA\n"]),
                args(&["ECHO", "it's"])
            ]
        );
        assert_eq!(
            parse_all(b"SET \"k\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            parse_all(b"SET \"k\"x\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            parse_all(b"SET 'k\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }

    #[test]
    fn bad_headers_are_protocol_errors() {
        use ProtocolError::*;
        assert_eq!(parse_all(b"*x\r\n"), Err(InvalidMultibulkLength));
        assert_eq!(parse_all(b"*65537\r\n"), Err(InvalidMultibulkLength));
        assert_eq!(
            parse_all(b"*99999999999999999999\r\n"),
            Err(InvalidMultibulkLength)
        );
        assert_eq!(parse_all(b"*1\r\n:1\r\n"), Err(ExpectedBulk(b':')));
        assert_eq!(parse_all(b"*1\r\n$-1\r\n"), Err(InvalidBulkLength));
        assert_eq!(parse_all(b"*1\r\n$1x\r\n"), Err(InvalidBulkLength));
        assert_eq!(parse_all(b"*1\r\n$1\r\nab\r\n"), Err(MissingBulkTerminator));
        assert_eq!(parse_all(b"*1\n"), Err(InvalidMultibulkLength));
        assert_eq!(
            parse_all(&[b'$'; 40]),
            Ok(vec![]),
            "a `$` line outside an array is inline"
        );
        assert_eq!(
            parse_all(b"*1\r\n$100000000000\r\n"),
            Err(InvalidBulkLength)
        );
        let too_long = format!("*1\r\n${}\r\n", MAX_BULK_BYTES + 1);
        assert_eq!(parse_all(too_long.as_bytes()), Err(InvalidBulkLength));
    }

    #[test]
    fn header_lines_are_bounded_before_their_newline_arrives() {
        let mut p = Parser::new();
        let line = [b'1'; MAX_HEADER_LINE_BYTES];
        let mut input = b"*".to_vec();
        input.extend_from_slice(&line);
        assert_eq!(p.feed(&input), Err(ProtocolError::InvalidMultibulkLength));
    }

    #[test]
    fn request_size_is_checked_from_declared_lengths() {
        let mut p = Parser::new();
        let n = MAX_REQUEST_BYTES / MAX_BULK_BYTES + 2;
        let mut input = format!("*{n}\r\n${MAX_BULK_BYTES}\r\n").into_bytes();
        input.resize(input.len() + MAX_BULK_BYTES, b'v');
        input.extend_from_slice(format!("\r\n${MAX_BULK_BYTES}\r\n").as_bytes());
        let mut pos = 0;
        let err = loop {
            match p.feed(&input[pos..]) {
                Ok((used, None)) if used > 0 => pos += used,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(err, ProtocolError::RequestTooLarge);
        assert!(p.held_bytes() <= MAX_REQUEST_BYTES);
    }

    #[test]
    fn inline_lines_are_bounded() {
        let mut long = vec![b'a'; MAX_INLINE_BYTES + 2];
        assert_eq!(Parser::new().feed(&long), Err(ProtocolError::InlineTooLong));
        long.truncate(MAX_INLINE_BYTES);
        long.extend_from_slice(b"\r\n");
        let (used, req) = Parser::new().feed(&long).expect("parses");
        assert_eq!(used, long.len());
        assert_eq!(req.map(|r| r[0].len()), Some(MAX_INLINE_BYTES));
    }

    #[test]
    fn reader_reassembles_trickled_requests() {
        let mut input = Vec::new();
        for _ in 0..3 {
            input.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        }
        let long_inline = format!("ECHO {}\r\n", "x".repeat(40_000));
        input.extend_from_slice(long_inline.as_bytes());
        for step in [1, 7, 4096, usize::MAX] {
            let mut r = RequestReader::new();
            let mut rest = &input[..];
            let mut got = Vec::new();
            loop {
                while let Some(req) = r.next_request().expect("parses") {
                    got.push(req);
                }
                assert!(r.held_bytes() <= MAX_READ_BUFFER_BYTES + MAX_REQUEST_BYTES);
                if rest.is_empty() {
                    break;
                }
                // A read of at most `step` bytes, as a socket might deliver them.
                let buf = r.read_buf().expect("room");
                assert!(!buf.is_empty());
                let n = step.min(buf.len()).min(rest.len());
                buf[..n].copy_from_slice(&rest[..n]);
                rest = &rest[n..];
                r.filled(n);
            }
            assert_eq!(got.len(), 4, "step {step}");
            assert_eq!(got[3][1].len(), 40_000);
            assert!(!r.has_buffered_input());
        }
    }

    #[test]
    fn reader_reports_protocol_errors() {
        let mut r = RequestReader::new();
        let input = b"*1\r\n$3\r\nGET\r\n*z\r\n";
        r.read_buf().expect("room")[..input.len()].copy_from_slice(input);
        r.filled(input.len());
        assert!(matches!(r.next_request(), Ok(Some(_))));
        assert_eq!(r.next_request(), Err(ProtocolError::InvalidMultibulkLength));
    }

    #[test]
    fn replies_are_framed() {
        let mut out = Vec::new();
        write_simple(&mut out, "OK");
        write_error(&mut out, "ERR bad\r\nthing");
        write_integer(&mut out, -3);
        write_bulk(&mut out, b"hi");
        write_nil(&mut out);
        write_array_len(&mut out, 2);
        assert_eq!(
            out,
            b"+OK\r\n-ERR bad  thing\r\n:-3\r\n$2\r\nhi\r\n$-1\r\n*2\r\n".to_vec()
        );
        assert_eq!(printable(b"a\r'"), "a\\x0d\\x27");
    }
}
