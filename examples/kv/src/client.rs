//! A minimal blocking RESP2 client: one connection, one command at a time. `serve --join` uses
//! it to ask a member of the cluster for its configuration and to be added.
//!
//! Replies are read with the same caution as requests: every length is checked before
//! anything is allocated from it, and nesting is bounded, so a hostile or confused server
//! cannot make the client hold more than [`MAX_REPLY_BYTES`] per bulk string.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::limits::{MAX_ARRAY_LEN, MAX_REPLY_BYTES};
use crate::resp::{write_array_len, write_bulk};

/// Arrays within arrays: `RAFT.MEMBERS` needs two.
const MAX_DEPTH: usize = 4;

/// The longest `+`, `-` or `:` line read, terminator included.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`: the whole line after the `-`, code first.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc`, or `None` for the nil bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`, or `None` for the nil array `*-1`.
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The error's code (`TRYAGAIN`, `ERR`, ...), if this is an error.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Value::Error(line) => Some(line.split(' ').next().unwrap_or("")),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Simple(s) => write!(f, "+{s}"),
            Value::Error(e) => write!(f, "-{e}"),
            Value::Integer(n) => write!(f, ":{n}"),
            Value::Bulk(None) | Value::Array(None) => f.write_str("(nil)"),
            Value::Bulk(Some(b)) => write!(f, "\"{}\"", crate::resp::printable(b)),
            Value::Array(Some(items)) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// A connection to a RESP server.
#[derive(Debug)]
pub struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `addr`; every later read and write fails after `timeout` without progress.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream: BufReader::new(stream),
        })
    }

    /// Sends one command and reads its reply. An error reply is `Ok(Value::Error(..))`; `Err` is
    /// a failed connection or a reply that is not RESP2, after which the connection is unusable.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Value> {
        let mut req = Vec::new();
        write_array_len(&mut req, args.len());
        for a in args {
            write_bulk(&mut req, a);
        }
        self.stream.get_mut().write_all(&req)?;
        read_value(&mut self.stream, 0)
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// One line without its `\r\n`, at most [`MAX_LINE_BYTES`].
fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.take(MAX_LINE_BYTES as u64).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let Some(line) = line.strip_suffix(b"\r\n") else {
        return Err(invalid("a reply line without CRLF, or too long"));
    };
    String::from_utf8(line.to_vec()).map_err(|_| invalid("a reply line that is not UTF-8"))
}

/// A length or count: -1 (nil) up to `max`.
fn read_len(r: &mut impl BufRead, max: usize) -> io::Result<Option<usize>> {
    let line = read_line(r)?;
    let n: i64 = line
        .parse()
        .map_err(|_| invalid(format!("bad length {line:?}")))?;
    match n {
        -1 => Ok(None),
        n if n >= 0 && n as u64 <= max as u64 => Ok(Some(n as usize)),
        _ => Err(invalid(format!("length {n} out of range"))),
    }
}

fn read_value(r: &mut impl BufRead, depth: usize) -> io::Result<Value> {
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind)?;
    match kind[0] {
        b'+' => Ok(Value::Simple(read_line(r)?)),
        b'-' => Ok(Value::Error(read_line(r)?)),
        b':' => {
            let line = read_line(r)?;
            let n = line
                .parse()
                .map_err(|_| invalid(format!("bad integer {line:?}")))?;
            Ok(Value::Integer(n))
        }
        b'$' => {
            let Some(len) = read_len(r, MAX_REPLY_BYTES)? else {
                return Ok(Value::Bulk(None));
            };
            // Grown as the bytes arrive, not from the declared length.
            let mut data = Vec::with_capacity(len.min(64 * 1024));
            r.take(len as u64 + 2).read_to_end(&mut data)?;
            if data.len() != len + 2 || !data.ends_with(b"\r\n") {
                return Err(invalid("a bulk string cut short or without CRLF"));
            }
            data.truncate(len);
            Ok(Value::Bulk(Some(data)))
        }
        b'*' => {
            if depth >= MAX_DEPTH {
                return Err(invalid("arrays nested too deep"));
            }
            let Some(n) = read_len(r, MAX_ARRAY_LEN)? else {
                return Ok(Value::Array(None));
            };
            let mut items = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                items.push(read_value(r, depth + 1)?);
            }
            Ok(Value::Array(Some(items)))
        }
        other => Err(invalid(format!("unknown reply type byte {other:#04x}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Value> {
        read_value(&mut BufReader::new(bytes), 0)
    }

    #[test]
    fn every_reply_type() {
        assert_eq!(parse(b"+OK\r\n").expect("ok"), Value::Simple("OK".into()));
        let e = parse(b"-TRYAGAIN later\r\n").expect("error reply");
        assert_eq!(e.error_code(), Some("TRYAGAIN"));
        assert_eq!(parse(b":-7\r\n").expect("int"), Value::Integer(-7));
        assert_eq!(parse(b"$-1\r\n").expect("nil"), Value::Bulk(None));
        assert_eq!(
            parse(b"$4\r\na\r\nb\r\n").expect("bulk"),
            Value::Bulk(Some(b"a\r\nb".to_vec()))
        );
        assert_eq!(
            parse(b"*2\r\n*3\r\n:1\r\n$-1\r\n$5\r\nvoter\r\n*0\r\n").expect("array"),
            Value::Array(Some(vec![
                Value::Array(Some(vec![
                    Value::Integer(1),
                    Value::Bulk(None),
                    Value::Bulk(Some(b"voter".to_vec())),
                ])),
                Value::Array(Some(vec![])),
            ]))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic_or_an_allocation() {
        for bad in [
            &b""[..],
            b"+OK",
            b"+OK\n",
            b"?x\r\n",
            b":x\r\n",
            b"$5\r\nab\r\n",
            b"$3\r\nabcde",
            b"$99999999999\r\n",
            b"$-2\r\n",
            b"*99999999\r\n",
            b"*1\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"+".to_vec(), vec![b'a'; MAX_LINE_BYTES + 10]].concat();
        assert!(parse(&long).is_err());
    }
}
