//! HTTPS: a rustls server configuration (TLS 1.2 and 1.3 only, aws-lc-rs as the crypto
//! provider, as for PostgreSQL connections) whose certificate can be replaced while the
//! server runs.
//!
//! The certificate lives behind a resolver rustls asks at each handshake, so [`Tls::reload`]
//! (on SIGHUP) affects only connections made afterwards: those already open keep the keys
//! they negotiated and are never dropped. A reload that fails (a half-written file, a key
//! that does not match) keeps the certificate in use and says why.
//!
//! With a client CA (`--tls-client-ca`), every connection must also present a client
//! certificate that chains to one of its certificates (rustls' WebPKI verifier: validity
//! dates, key usage for client authentication, signature), or the handshake fails before a
//! byte of HTTP is read. It is an extra gate, not an identity: requests are still
//! authenticated by SigV4 and authorized by IAM exactly as without it. The CA file is read
//! at start only.
//!
//! Besides SIGHUP, [`Tls::watch_files`] reloads when the certificate or key file changes
//! (modification time, size or inode, looked at every few seconds: no inotify dependency,
//! and it sees a file replaced by rename, as certificate managers do). A reload that fails
//! because only one of the two files was replaced yet is tried again when the other is.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use zeroize::Zeroize;

/// The certificate and key files, and the certificate being served from them.
pub struct Tls {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Arc<Current>,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.cert_path).finish_non_exhaustive()
    }
}

/// The resolver: one certificate for every server name, swapped whole on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl Tls {
    /// Loads `cert_path` (PEM: the server's certificate first, then its chain) and `key_path`
    /// (PEM: PKCS#8, PKCS#1 or SEC1), and checks that they belong together. With
    /// `client_ca` (PEM: one or more CA certificates), clients must present a certificate
    /// issued under one of them.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        client_ca: Option<&Path>,
    ) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certified = load_pair(cert_path, key_path, &provider)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(certified))));
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS configuration: {e}"))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => builder.with_client_cert_verifier(client_verifier(path, &provider)?),
        };
        let mut config = builder.with_cert_resolver(current.clone());
        // The server speaks HTTP/1.1 only (hyper's HTTP/1 builder).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again and serves the new certificate to connections made from now
    /// on. On failure the certificate in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let certified = load_pair(&self.cert_path, &self.key_path, &self.provider)?;
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
        Ok(())
    }

    /// The SHA-256 fingerprint of the certificate being served (hex, colon-separated).
    pub fn fingerprint(&self) -> String {
        let current = self.current.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        fingerprint(current.cert.first().map_or(&[][..], |c| c.as_ref()))
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }

    /// What the two files look like now: their modification times, sizes and inodes.
    fn stamp(&self) -> Option<[(std::time::SystemTime, u64, u64); 2]> {
        use std::os::unix::fs::MetadataExt;
        let one = |path: &Path| {
            let m = std::fs::metadata(path).ok()?;
            Some((m.modified().ok()?, m.len(), m.ino()))
        };
        Some([one(&self.cert_path)?, one(&self.key_path)?])
    }

    /// Runs forever: every `every`, reloads if either file changed since the last look.
    pub async fn watch_files(self: Arc<Self>, every: std::time::Duration) {
        let mut seen = self.stamp();
        loop {
            tokio::time::sleep(every).await;
            let now = self.stamp();
            // A file missing for a moment (being replaced) is looked at again next time.
            if now.is_none() || now == seen {
                continue;
            }
            seen = now;
            match self.reload() {
                Ok(()) => tracing::info!(
                    fingerprint = %self.fingerprint(),
                    "reloaded the TLS certificate (its files changed)"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    "the TLS certificate files changed but do not load (yet); still serving the previous certificate"
                ),
            }
        }
    }
}

/// The verifier of client certificates issued under the CA certificates in `path`.
fn client_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the TLS client CA {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| format!("the TLS client CA {} is not PEM: {e}", path.display()))?;
        roots.add(cert).map_err(|e| {
            format!("the TLS client CA {} holds an unusable certificate: {e}", path.display())
        })?;
    }
    if roots.is_empty() {
        return Err(format!("the TLS client CA file {} holds no certificate", path.display()));
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("TLS client CA {}: {e}", path.display()))
}

/// The SHA-256 fingerprint of a DER certificate, as `openssl x509 -fingerprint -sha256`
/// shows it (upper-case hex pairs joined by colons).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let cert_pem = std::fs::read(cert_path)
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert_path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the TLS certificate {} is not PEM: {e}", cert_path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "the TLS certificate file {} holds no certificate",
            cert_path.display()
        ));
    }
    let mut key_pem = std::fs::read(key_path)
        .map_err(|e| format!("cannot read the TLS key {}: {e}", key_path.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem);
    key_pem.zeroize();
    let key =
        key.map_err(|e| format!("the TLS key {} holds no usable key: {e}", key_path.display()))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!(
            "the TLS key {} does not fit the certificate {}: {e}",
            key_path.display(),
            cert_path.display()
        )
    })
}

/// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`, written (certificate
/// 0644, key 0600) as `cert.pem` and `key.pem` in `dir`: for `coffer serve --dev
/// --tls-self-signed`, never for production.
pub fn write_self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let write = |path: &Path, mode: u32, bytes: &[u8]| -> Result<(), String> {
        let _ = std::fs::remove_file(path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        file.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(&cert_path, 0o644, generated.cert.pem().as_bytes())?;
    let mut key = generated.signing_key.serialize_pem();
    let written = write(&key_path, 0o600, key.as_bytes());
    key.zeroize();
    written?;
    Ok((cert_path, key_path))
}
