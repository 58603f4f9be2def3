//! A lean HTTP/1.1 keep-alive client for signed JSON 1.1 calls.
//!
//! The load generator shares two cores with the server it measures, so every
//! microsecond it spends is taken from the server. This client does the least
//! a correct HTTP/1.1 client can: one request at a time per connection (no
//! pipelining), `Content-Length` or chunked responses, reconnect when the
//! server closes.

use crate::sigv4::{self, CONTENT_TYPE, Credentials};
use std::io;
use std::net::SocketAddr;
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where requests go and how they are signed.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub creds: Credentials,
    pub region: String,
}

impl Endpoint {
    pub fn new(addr: SocketAddr, creds: Credentials) -> Endpoint {
        Endpoint { addr, creds, region: "us-east-1".to_string() }
    }

    /// A signed `POST /` for `secretsmanager.<op>`, ready to write.
    pub fn request(&self, op: &str, body: &[u8]) -> Vec<u8> {
        self.request_signed_at(op, body, SystemTime::now())
    }

    fn request_signed_at(&self, op: &str, body: &[u8], time: SystemTime) -> Vec<u8> {
        let host = self.addr.to_string();
        let target = format!("secretsmanager.{op}");
        let signed =
            sigv4::sign(&self.creds, &self.region, "secretsmanager", &host, &target, body, time);
        let mut out = Vec::with_capacity(400 + body.len());
        out.extend_from_slice(
            format!(
                "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: {CONTENT_TYPE}\r\nX-Amz-Target: {target}\r\nX-Amz-Date: {}\r\nAuthorization: {}\r\nUser-Agent: coffer-bench\r\nContent-Length: {}\r\n\r\n",
                signed.amz_date,
                signed.authorization,
                body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(body);
        out
    }

    /// The same request with its signature altered, to learn whether a server verifies.
    pub fn badly_signed_request(&self, op: &str, body: &[u8]) -> Vec<u8> {
        spoil_signature(self.request(op, body))
    }
}

/// Changes the first hex digit of the signature of a signed request.
fn spoil_signature(mut request: Vec<u8>) -> Vec<u8> {
    let marker = b"Signature=";
    let at = request.windows(marker.len()).position(|w| w == marker).expect("a signed request")
        + marker.len();
    request[at] = if request[at] == b'0' { b'1' } else { b'0' };
    request
}

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The AWS error code of an error body (`__type`), for reports.
    pub fn error_type(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("__type").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {}", self.status))
    }
}

/// One keep-alive connection, reopened when the server closes it.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn { addr, stream: None, buf: Vec::with_capacity(16 * 1024) }
    }

    /// Sends one request and reads its whole response.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Response> {
        // A kept-alive connection the server closed while idle fails on first
        // use; retry once on a fresh connection, as HTTP clients do.
        let reused = self.stream.is_some();
        match self.send_once(request).await {
            Err(_) if reused => {
                self.stream = None;
                self.send_once(request).await
            }
            other => other,
        }
    }

    async fn send_once(&mut self, request: &[u8]) -> io::Result<Response> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().expect("connected above");
        let result = async {
            stream.write_all(request).await?;
            read_response(stream, &mut self.buf).await
        }
        .await;
        match result {
            Ok((response, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(response)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

/// Reads one response from `stream`; returns it and whether the connection stays open.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(Response, bool)> {
    loop {
        if let Some(head) = parse_head(buf)? {
            let body = read_body(stream, buf, &head).await?;
            return Ok((Response { status: head.status, body }, head.keep_alive));
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let start = buf.len();
    buf.resize(start + 16 * 1024, 0);
    let n = stream.read(&mut buf[start..]).await;
    match n {
        Ok(0) => {
            buf.truncate(start);
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-response"))
        }
        Ok(n) => {
            buf.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            buf.truncate(start);
            Err(e)
        }
    }
}

/// What the status line and headers say about the body.
#[derive(Debug, PartialEq)]
struct Head {
    status: u16,
    head_len: usize,
    length: BodyLength,
    keep_alive: bool,
}

#[derive(Debug, PartialEq)]
enum BodyLength {
    Known(usize),
    Chunked,
    /// No length: the body runs to the end of the connection.
    UntilClose,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(&format!("bad response head: {e}"))),
    };
    let status = response.code.ok_or_else(|| invalid("no status code"))?;
    let http10 = response.version == Some(0);
    let mut length = BodyLength::UntilClose;
    let mut keep_alive = !http10;
    for h in response.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value.parse().map_err(|_| invalid("bad Content-Length"))?;
            if length != BodyLength::Chunked {
                length = BodyLength::Known(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            length = BodyLength::Chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            if value.contains("close") {
                keep_alive = false;
            } else if value.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }
    if length == BodyLength::UntilClose {
        keep_alive = false;
    }
    Ok(Some(Head { status, head_len, length, keep_alive }))
}

async fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, head: &Head) -> io::Result<Vec<u8>> {
    match head.length {
        BodyLength::Known(n) => {
            while buf.len() < head.head_len + n {
                read_more(stream, buf).await?;
            }
            let body = buf[head.head_len..head.head_len + n].to_vec();
            buf.drain(..head.head_len + n);
            Ok(body)
        }
        BodyLength::UntilClose => {
            while read_more(stream, buf).await.is_ok() {}
            let body = buf[head.head_len..].to_vec();
            buf.clear();
            Ok(body)
        }
        BodyLength::Chunked => {
            let mut body = Vec::new();
            let mut at = head.head_len;
            loop {
                match decode_chunk(&buf[at..])? {
                    Chunk::Partial => read_more(stream, buf).await?,
                    Chunk::Data { start, len, next } => {
                        body.extend_from_slice(&buf[at + start..at + start + len]);
                        at += next;
                    }
                    Chunk::Last { next } => {
                        buf.drain(..at + next);
                        return Ok(body);
                    }
                }
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum Chunk {
    Partial,
    Data { start: usize, len: usize, next: usize },
    Last { next: usize },
}

/// Decodes the chunk at the start of `data` (offsets relative to it).
fn decode_chunk(data: &[u8]) -> io::Result<Chunk> {
    let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
        return Ok(Chunk::Partial);
    };
    let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| invalid("chunk size"))?;
    let size_text = size_text.split(';').next().unwrap_or("").trim();
    let len = usize::from_str_radix(size_text, 16).map_err(|_| invalid("chunk size"))?;
    let start = line_end + 2;
    if len == 0 {
        // Trailers are not used by the servers measured here: expect the final CRLF.
        return match data[start..].windows(2).position(|w| w == b"\r\n") {
            Some(p) => Ok(Chunk::Last { next: start + p + 2 }),
            None => Ok(Chunk::Partial),
        };
    }
    if data.len() < start + len + 2 {
        return Ok(Chunk::Partial);
    }
    Ok(Chunk::Data { start, len, next: start + len + 2 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn a_head_with_content_length_keeps_the_connection_alive() {
        let head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(
            head,
            Some(Head {
                status: 200,
                head_len: 38,
                length: BodyLength::Known(5),
                keep_alive: true
            })
        );
    }

    #[test]
    fn an_incomplete_head_asks_for_more_bytes() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(), None);
    }

    #[test]
    fn connection_close_and_http_1_0_end_keep_alive() {
        let closed =
            parse_head(b"HTTP/1.1 400 Bad\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(!closed.keep_alive);
        let old = parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert!(!old.keep_alive);
    }

    #[test]
    fn chunks_decode_with_extensions_and_a_last_chunk() {
        assert_eq!(
            decode_chunk(b"5;x=y\r\nhello\r\n").unwrap(),
            Chunk::Data { start: 7, len: 5, next: 14 }
        );
        assert_eq!(decode_chunk(b"5\r\nhel").unwrap(), Chunk::Partial);
        assert_eq!(decode_chunk(b"0\r\n\r\n").unwrap(), Chunk::Last { next: 5 });
    }

    /// Serves canned responses, one per request, on a fresh loopback port.
    async fn canned_server(responses: Vec<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            for response in responses {
                let mut seen = Vec::new();
                // Read one whole request: head, then Content-Length bytes.
                loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .map(|v| v.trim().parse().unwrap())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                socket.write_all(response).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn one_connection_carries_sized_and_chunked_responses_in_turn() {
        let addr = canned_server(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"__\r\n13\r\ntype\":\"Throttling\"}\r\n0\r\n\r\n",
        ])
        .await;
        let creds =
            Credentials { access_key_id: "AKIDEXAMPLE".into(), secret_access_key: "secret".into() };
        let endpoint = Endpoint::new(addr, creds);
        let mut conn = Conn::new(addr);
        let first = conn.send(&endpoint.request("ListSecrets", b"{}")).await.unwrap();
        assert_eq!((first.status, first.body.as_slice()), (200, b"{}".as_slice()));
        let second = conn.send(&endpoint.request("ListSecrets", b"{}")).await.unwrap();
        assert_eq!(second.status, 400);
        assert_eq!(second.error_type(), "Throttling");
    }

    #[test]
    fn a_spoiled_request_differs_in_one_signature_digit() {
        let creds = Credentials { access_key_id: "AKID".into(), secret_access_key: "s".into() };
        let endpoint = Endpoint::new("127.0.0.1:1".parse().unwrap(), creds);
        let good = endpoint.request_signed_at("ListSecrets", b"{}", SystemTime::UNIX_EPOCH);
        let bad = spoil_signature(good.clone());
        let differing: Vec<usize> = (0..good.len()).filter(|&i| good[i] != bad[i]).collect();
        assert_eq!(differing.len(), 1);
        let text = String::from_utf8_lossy(&good);
        assert_eq!(differing[0], text.find("Signature=").unwrap() + "Signature=".len());
    }
}
