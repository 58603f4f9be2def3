//! The HTTP ceiling: a bare hyper server that answers every request with one
//! fixed body of GetSecretValue's size. No signature check, no JSON, no
//! store: what this machine's HTTP stack can do with the same load generator.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

/// A JSON object of exactly `size` bytes (at least 20), shaped like a GetSecretValue answer.
pub fn fixed_body(size: usize) -> Bytes {
    let head = br#"{"SecretString":""#;
    let tail = br#""}"#;
    let fill = size.saturating_sub(head.len() + tail.len());
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head);
    body.resize(head.len() + fill, b'x');
    body.extend_from_slice(tail);
    Bytes::from(body)
}

/// Serves `body` to every request on `listener` until the process ends.
pub async fn serve(listener: TcpListener, body: Bytes) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let body = body.clone();
                async move {
                    // Read the request body as any server must before answering on a kept-alive connection.
                    let _ = request.into_body().collect().await;
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", crate::sigv4::CONTENT_TYPE)
                            .body(Full::new(body))
                            .expect("static response parts are valid"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Conn, Endpoint};
    use crate::sigv4::Credentials;

    #[test]
    fn the_fixed_body_has_the_asked_size_and_is_json() {
        for size in [20, 100, 1234] {
            let body = fixed_body(size);
            assert_eq!(body.len(), size);
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(parsed["SecretString"].is_string());
        }
    }

    #[tokio::test]
    async fn the_ceiling_answers_signed_requests_on_one_kept_alive_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, fixed_body(500)));
        let creds = Credentials { access_key_id: "AKID".into(), secret_access_key: "s".into() };
        let endpoint = Endpoint::new(addr, creds);
        let mut conn = Conn::new(addr);
        for _ in 0..3 {
            let body = br#"{"SecretId":"x"}"#;
            let response = conn.send(&endpoint.request("GetSecretValue", body)).await.unwrap();
            assert_eq!(response.status, 200);
            assert_eq!(response.body.len(), 500);
        }
    }
}
