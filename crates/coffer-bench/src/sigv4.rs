//! SigV4 request signing, byte for byte as the AWS SDKs sign a JSON 1.1 call.
//!
//! Every benchmark request is signed afresh (new date, new signing key, new
//! payload hash), because that is the work a real client does and a server
//! that verifies signatures must redo. The test module checks the output
//! against the `aws-sigv4` crate the Rust SDK itself uses.

use aws_lc_rs::{digest, hmac};
use std::time::{SystemTime, UNIX_EPOCH};

/// An access key pair.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key is a credential: never print it.
        write!(f, "Credentials({}, ***)", self.access_key_id)
    }
}

/// The headers the SDKs sign on a JSON 1.1 request, in canonical (sorted) order.
pub const SIGNED_HEADERS: &str = "content-type;host;x-amz-date;x-amz-target";

/// The content type of AWS JSON 1.1.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// What a signed request needs besides its body.
pub struct Signed {
    /// `YYYYMMDDTHHMMSSZ`, sent as `X-Amz-Date`.
    pub amz_date: String,
    /// The full `Authorization` header value.
    pub authorization: String,
}

/// Signs `POST /` with the given host, target and body at `time`.
pub fn sign(
    creds: &Credentials,
    region: &str,
    service: &str,
    host: &str,
    target: &str,
    body: &[u8],
    time: SystemTime,
) -> Signed {
    let amz_date = amz_date(time);
    let date = &amz_date[..8];
    let payload_hash = hex(digest::digest(&digest::SHA256, body).as_ref());
    let canonical_request = format!(
        "POST\n/\n\ncontent-type:{CONTENT_TYPE}\nhost:{host}\nx-amz-date:{amz_date}\nx-amz-target:{target}\n\n{SIGNED_HEADERS}\n{payload_hash}"
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let mut key = hmac_sha256(format!("AWS4{}", creds.secret_access_key).as_bytes(), date);
    for part in [region, service, "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    let signature = hex(&hmac_sha256(&key, &string_to_sign));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={signature}",
        creds.access_key_id
    );
    Signed { amz_date, authorization }
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data.as_bytes()).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Formats `time` as SigV4's `YYYYMMDDTHHMMSSZ` (UTC).
pub fn amz_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".to_string(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string(),
        }
    }

    #[test]
    fn amz_date_formats_known_instants() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661);
        assert_eq!(amz_date(leap_day), "20000229T010101Z");
        let late = UNIX_EPOCH + Duration::from_secs(1_767_225_599);
        assert_eq!(amz_date(late), "20251231T235959Z");
    }

    #[test]
    fn credentials_debug_hides_the_secret_key() {
        let printed = format!("{:?}", creds());
        assert!(printed.contains("AKIDEXAMPLE"));
        assert!(!printed.contains("wJalr"));
    }

    #[test]
    fn signature_matches_the_aws_sigv4_crate_of_the_rust_sdk() {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
        use aws_sigv4::sign::v4::SigningParams;

        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_123);
        let body = br#"{"SecretId":"bench/get/0001"}"#;
        let host = "127.0.0.1:4566";
        let target = "secretsmanager.GetSecretValue";
        let ours = sign(&creds(), "us-east-1", "secretsmanager", host, target, body, time);

        let c = creds();
        let identity = aws_credential_types::Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            None,
            None,
            "test",
        )
        .into();
        let params = SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("secretsmanager")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .expect("complete signing parameters")
            .into();
        let headers = [("content-type", CONTENT_TYPE), ("host", host), ("x-amz-target", target)];
        let request = SignableRequest::new(
            "POST",
            "http://127.0.0.1:4566/",
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .expect("a signable request");
        let (instructions, _signature) =
            aws_sigv4::http_request::sign(request, &params).expect("signing").into_parts();
        let theirs: Vec<(&str, &str)> = instructions.headers().collect();
        let authorization = theirs.iter().find(|(k, _)| *k == "authorization").expect("auth").1;
        let date = theirs.iter().find(|(k, _)| *k == "x-amz-date").expect("date").1;
        assert_eq!(ours.amz_date, date);
        assert_eq!(ours.authorization, authorization);
    }
}
