//! The SigV4 chain against AWS's published signature test suite (`aws-sig-v4-test-suite`,
//! key `AKIDEXAMPLE`, 2015-08-30T12:36:00Z, us-east-1, service `service`), plus the
//! verification rules around it: skew, scope, tampering and constant-time comparison.

use coffer_auth::sigv4::{
    CredentialScope, Expectation, RequestParts, SigV4Error, authorization_header,
    canonical_request, prevalidate, signature, signing_key, string_to_sign,
};
use coffer_auth::time::parse_amz_date;

const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const DATE: &str = "20150830T123600Z";

/// One vector: the request line, extra headers, and what AWS says the canonical
/// request's last lines and the final Authorization header are.
struct Vector {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    query: &'static str,
    headers: &'static [(&'static str, &'static str)],
    canonical_head: &'static str,
    authorization: &'static str,
}

const EMPTY_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const VECTORS: &[Vector] = &[
    Vector {
        name: "get-vanilla",
        method: "GET",
        path: "/",
        query: "",
        headers: &[],
        canonical_head: "GET\n/\n\n",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    Vector {
        name: "post-vanilla",
        method: "POST",
        path: "/",
        query: "",
        headers: &[],
        canonical_head: "POST\n/\n\n",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    },
    Vector {
        name: "post-vanilla-query",
        method: "POST",
        path: "/",
        query: "Param1=value1",
        headers: &[],
        canonical_head: "POST\n/\nParam1=value1\n",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    },
    Vector {
        name: "get-vanilla-query-order-key-case",
        method: "GET",
        path: "/",
        query: "Param2=value2&Param1=value1",
        headers: &[],
        canonical_head: "GET\n/\nParam1=value1&Param2=value2\n",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    },
    Vector {
        name: "get-vanilla-query-unreserved",
        method: "GET",
        path: "/",
        query: "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        headers: &[],
        canonical_head: "GET\n/\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    },
    Vector {
        name: "get-vanilla-utf8-query",
        method: "GET",
        path: "/",
        query: "\u{1234}=bar",
        headers: &[],
        canonical_head: "GET\n/\n%E1%88%B4=bar\n",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    },
    Vector {
        name: "get-utf8",
        method: "GET",
        path: "/\u{1234}",
        query: "",
        headers: &[],
        canonical_head: "GET\n/%E1%88%B4\n\n",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    },
    Vector {
        name: "get-space",
        method: "GET",
        path: "/example space/",
        query: "",
        headers: &[],
        canonical_head: "GET\n/example%20space/\n\n",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    },
    Vector {
        name: "normalize-path/get-slash-dot-slash",
        method: "GET",
        path: "/./",
        query: "",
        headers: &[],
        canonical_head: "GET\n/\n\n",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    Vector {
        name: "post-header-key-sort",
        method: "POST",
        path: "/",
        query: "",
        headers: &[("My-Header1", "value1")],
        canonical_head: "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\n",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
    },
    Vector {
        name: "get-header-value-trim",
        method: "GET",
        path: "/",
        query: "",
        headers: &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
        canonical_head: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    },
    Vector {
        name: "get-header-value-multiline",
        method: "GET",
        path: "/",
        query: "",
        headers: &[("My-Header1", "value1\n  value2\n     value3")],
        canonical_head: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1,value2,value3\n",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=ba17b383a53190154eb5fa66a1b836cc297cc0a3d70a5d00705980573d8ff790",
    },
];

fn scope() -> CredentialScope {
    CredentialScope {
        date: "20150830".into(),
        region: "us-east-1".into(),
        service: "service".into(),
    }
}

fn headers_of(v: &Vector) -> Vec<(&'static str, &'static [u8])> {
    let mut h: Vec<(&str, &[u8])> =
        vec![("Host", b"example.amazonaws.com"), ("X-Amz-Date", DATE.as_bytes())];
    h.extend(v.headers.iter().map(|(n, val)| (*n, val.as_bytes())));
    h
}

fn signed_of(v: &Vector) -> Vec<String> {
    let mut names: Vec<String> = vec!["host".into(), "x-amz-date".into()];
    names.extend(v.headers.iter().map(|(n, _)| n.to_ascii_lowercase()));
    names.sort();
    names
}

fn expectation(now: i64) -> Expectation<'static> {
    Expectation { service: "service", now_secs: now, region_is_valid: &|r| r == "us-east-1" }
}

#[test]
fn the_chain_reproduces_every_published_vector() {
    for v in VECTORS {
        let headers = headers_of(v);
        let req = RequestParts {
            method: v.method,
            path: v.path,
            query: v.query,
            headers: &headers,
            body: b"",
        };
        let signed = signed_of(v);
        let canonical = canonical_request(&req, &signed);
        assert!(canonical.starts_with(v.canonical_head), "{}: {canonical}", v.name);
        assert!(
            canonical.ends_with(&format!("\n{}\n{EMPTY_HASH}", signed.join(";"))),
            "{}",
            v.name
        );
        let auth = authorization_header(&req, "AKIDEXAMPLE", SECRET, &scope(), &signed);
        assert_eq!(auth, v.authorization, "{}", v.name);
    }
}

#[test]
fn the_string_to_sign_of_get_vanilla_is_the_published_one() {
    let v = &VECTORS[0];
    let headers = headers_of(v);
    let req = RequestParts { method: "GET", path: "/", query: "", headers: &headers, body: b"" };
    let sts = string_to_sign(DATE, &scope(), &canonical_request(&req, &signed_of(v)));
    assert_eq!(
        sts,
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    );
    let sig = signature(&signing_key(SECRET, &scope()), &sts);
    assert_eq!(sig.to_hex(), "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

/// A signed POST with the vector's headers, ready to verify.
struct Signed {
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Signed {
    fn new(body: &[u8], region: &str, service: &str) -> Signed {
        let mut headers: Vec<(String, Vec<u8>)> = vec![
            ("host".into(), b"example.amazonaws.com".to_vec()),
            ("x-amz-date".into(), DATE.as_bytes().to_vec()),
            ("x-amz-target".into(), b"secretsmanager.GetSecretValue".to_vec()),
        ];
        let signed: Vec<String> = vec!["host".into(), "x-amz-date".into(), "x-amz-target".into()];
        let scope = CredentialScope {
            date: "20150830".into(),
            region: region.into(),
            service: service.into(),
        };
        let auth = {
            let refs = refs(&headers);
            let req = parts(&refs, body);
            authorization_header(&req, "AKIDEXAMPLE", SECRET, &scope, &signed)
        };
        headers.push(("authorization".into(), auth.into_bytes()));
        Signed { headers, body: body.to_vec() }
    }

    fn check(&self, now: i64, secret: &[u8]) -> Result<(), SigV4Error> {
        let refs = refs(&self.headers);
        let req = parts(&refs, &self.body);
        let pre = prevalidate(&req, &expectation(now))?;
        assert_eq!(pre.access_key_id(), "AKIDEXAMPLE");
        pre.verify(&req, secret)
    }
}

fn refs(headers: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect()
}

fn parts<'a>(headers: &'a [(&'a str, &'a [u8])], body: &'a [u8]) -> RequestParts<'a> {
    RequestParts { method: "POST", path: "/", query: "", headers, body }
}

fn at() -> i64 {
    parse_amz_date(DATE).unwrap()
}

#[test]
fn a_correctly_signed_request_verifies_and_a_wrong_secret_does_not() {
    let signed = Signed::new(br#"{"SecretId":"prod/db"}"#, "us-east-1", "service");
    signed.check(at(), SECRET).unwrap();
    assert_eq!(
        signed.check(at(), b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ"),
        Err(SigV4Error::SignatureMismatch)
    );
}

#[test]
fn a_changed_body_or_signed_header_is_a_signature_mismatch() {
    let mut signed = Signed::new(br#"{"SecretId":"prod/db"}"#, "us-east-1", "service");
    signed.body = br#"{"SecretId":"prod/dc"}"#.to_vec();
    assert_eq!(signed.check(at(), SECRET), Err(SigV4Error::SignatureMismatch));
    let mut signed = Signed::new(b"{}", "us-east-1", "service");
    signed.headers[2].1 = b"secretsmanager.DeleteSecret".to_vec();
    let err = signed.check(at(), SECRET).unwrap_err();
    assert_eq!(err.json_code(), "InvalidSignatureException");
    assert!(err.message().starts_with("The request signature we calculated does not match"));
}

#[test]
fn requests_outside_the_five_minute_window_are_refused_in_aws_words() {
    let signed = Signed::new(b"{}", "us-east-1", "service");
    signed.check(at() + 300, SECRET).unwrap();
    signed.check(at() - 300, SECRET).unwrap();
    let err = signed.check(at() + 360, SECRET).unwrap_err();
    assert_eq!(err.json_code(), "InvalidSignatureException");
    assert_eq!(
        err.message(),
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123700Z (20150830T124200Z - 5 min.)"
    );
    let err = signed.check(at() - 360, SECRET).unwrap_err();
    assert_eq!(
        err.message(),
        "Signature not yet current: 20150830T123600Z is still later than 20150830T123500Z (20150830T123000Z + 5 min.)"
    );
}

#[test]
fn a_scope_for_another_region_or_service_is_refused_before_any_key_is_used() {
    let err = Signed::new(b"{}", "us-east-7", "service").check(at(), SECRET).unwrap_err();
    assert_eq!(
        err,
        SigV4Error::InvalidSignature(
            "Credential should be scoped to a valid region, not 'us-east-7'. ".into()
        )
    );
    let err = Signed::new(b"{}", "us-east-1", "kms").check(at(), SECRET).unwrap_err();
    assert_eq!(err.message(), "Credential should be scoped to correct service: 'service'. ");
    assert_eq!(err.query_code(), "SignatureDoesNotMatch");
}

#[test]
fn missing_and_incomplete_authorization_get_aws_codes() {
    let headers: Vec<(&str, &[u8])> = vec![("host", b"h"), ("x-amz-date", DATE.as_bytes())];
    let err = prevalidate(&parts(&headers, b""), &expectation(at())).unwrap_err();
    assert_eq!(err.json_code(), "MissingAuthenticationTokenException");
    assert_eq!(err.message(), "Missing Authentication Token");
    let presigned = RequestParts {
        query: "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Signature=00",
        ..parts(&headers, b"")
    };
    assert_eq!(
        prevalidate(&presigned, &expectation(at())).unwrap_err(),
        SigV4Error::PresignedUrlNotSupported
    );

    let auth = b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
    let headers: Vec<(&str, &[u8])> =
        vec![("host", b"h"), ("x-amz-date", DATE.as_bytes()), ("authorization", auth)];
    let err = prevalidate(&parts(&headers, b""), &expectation(at())).unwrap_err();
    assert_eq!(err.json_code(), "IncompleteSignatureException");
    assert_eq!(
        err.message(),
        format!(
            "Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization={}",
            String::from_utf8_lossy(auth)
        )
    );

    let auth = b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date, Signature=00";
    let headers: Vec<(&str, &[u8])> =
        vec![("host", b"h"), ("x-amz-date", DATE.as_bytes()), ("authorization", auth)];
    let err = prevalidate(&parts(&headers, b""), &expectation(at())).unwrap_err();
    assert!(err.message().starts_with("'Host' or ':authority' must be a 'SignedHeader'"), "{err}");

    let headers: Vec<(&str, &[u8])> = vec![("host", b"h"), ("authorization", auth)];
    let err = prevalidate(&parts(&headers, b""), &expectation(at())).unwrap_err();
    assert!(err.message().starts_with(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    ));
}

#[test]
fn a_scope_date_that_differs_from_the_request_date_is_refused() {
    let auth = b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150831/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
    let headers: Vec<(&str, &[u8])> =
        vec![("host", b"h"), ("x-amz-date", DATE.as_bytes()), ("authorization", auth)];
    let err = prevalidate(&parts(&headers, b""), &expectation(at())).unwrap_err();
    assert_eq!(
        err.message(),
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20150831' != '20150830', from '20150830T123600Z'."
    );
}

#[test]
fn signatures_compare_only_when_fully_equal() {
    let sig = signature(&signing_key(SECRET, &scope()), "x");
    let hex = sig.to_hex();
    assert!(sig.matches(&hex));
    let mut flipped = hex.clone().into_bytes();
    flipped[63] = if flipped[63] == b'0' { b'1' } else { b'0' };
    assert!(!sig.matches(std::str::from_utf8(&flipped).unwrap()));
    assert!(!sig.matches(&hex[..62]));
    assert!(!sig.matches("zz"));
    assert!(!sig.matches(""));
}
