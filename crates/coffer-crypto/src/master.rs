//! The master key: its text form, its key file, the check value that detects a changed key at
//! start-up, and wrapping of key-encryption keys.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

use crate::aead::{self, OVERHEAD};
use crate::error::CryptoError;
use crate::keys::{KEY_LEN, KeyMaterial};
use crate::random_bytes;

/// Format version written at the start of wrapped keys and check values.
const FORMAT_VERSION: u8 = 1;

/// Length of a wrapped key: version, nonce, encrypted key and tag.
pub const WRAPPED_KEY_LEN: usize = 1 + OVERHEAD + KEY_LEN;

/// Domain label for wrapped keys, so a wrapped key never verifies as a check value.
const WRAP_DOMAIN: &[u8] = b"coffer/v1/master/wrapped-key\0";

/// Domain label for check values, so a check value never unwraps as a key.
const CHECK_DOMAIN: &[u8] = b"coffer/v1/master/check\0";

/// The known plaintext sealed in a check value.
const CHECK_PLAINTEXT: &[u8] = b"coffer master key check value v1";

/// A key file is one line of base64 (44 characters); anything much larger is not a key file,
/// and reading it whole would only waste memory.
const MAX_KEY_FILE_LEN: u64 = 1024;

/// The root of the key hierarchy. It only wraps other keys and seals its own check value.
pub struct MasterKey {
    pub(crate) key: KeyMaterial,
}

impl MasterKey {
    /// Generates a fresh random master key.
    ///
    /// # Panics
    /// Panics if the system random generator fails.
    pub fn generate() -> MasterKey {
        MasterKey { key: KeyMaterial::generate() }
    }

    /// Uses `key` as the master key.
    pub fn from_key_material(key: KeyMaterial) -> MasterKey {
        MasterKey { key }
    }

    /// Parses the text form: standard base64 (with padding) of exactly 32 bytes, surrounding
    /// whitespace ignored. This is the format of `COFFER_MASTER_KEY` and of key files, and
    /// what `openssl rand -base64 32` prints.
    ///
    /// # Errors
    /// [`CryptoError::MalformedKey`] for anything else; the message does not repeat the text.
    pub fn from_text(text: &str) -> Result<MasterKey, CryptoError> {
        // Room for more than 32 bytes, so that a longer key is detected as too long instead
        // of being rejected by the decoder for lack of space.
        let mut decoded = Zeroizing::new([0u8; KEY_LEN + 16]);
        let len = STANDARD
            .decode_slice(text.trim(), &mut decoded[..])
            .map_err(|_| CryptoError::MalformedKey)?;
        let key = KeyMaterial::from_bytes(&decoded[..len])?;
        Ok(MasterKey { key })
    }

    /// The text form accepted by [`MasterKey::from_text`], in a string zeroized on drop.
    pub fn to_text(&self) -> Zeroizing<String> {
        // Base64 of 32 bytes is 44 characters; reserving them up front avoids reallocations
        // that would leave copies of the key in freed memory.
        let mut text = Zeroizing::new(String::with_capacity(44));
        STANDARD.encode_string(self.key.expose(), &mut text);
        text
    }

    /// Reads the key file at `path`.
    ///
    /// # Errors
    /// [`CryptoError::Io`] if the file cannot be opened or read, and
    /// [`CryptoError::MalformedKeyFile`] if it does not hold the text form of a key.
    pub fn load(path: &Path) -> Result<MasterKey, CryptoError> {
        let file = File::open(path).map_err(|e| io_error("open", path, e))?;
        read_key_file(file, path)
    }

    /// The permission bits of the key file at `path` when its group or others may read or
    /// write it (`None` when only its owner may, or it cannot be looked at). The caller warns,
    /// as ssh does about a private key others can read: whoever reads the key reads every
    /// secret in a copy of the database.
    pub fn exposed_file_mode(path: &Path) -> Option<u32> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path).ok()?.permissions().mode() & 0o7777;
            (mode & 0o077 != 0).then_some(mode)
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }

    /// Reads the key file at `path`, or creates it with a fresh key if it does not exist.
    /// Returns the key and whether the file was created.
    ///
    /// A new file is written under a temporary name (mode 0600, `create_new`), fsynced, then
    /// published with a hard link, which fails rather than replaces if `path` appeared in the
    /// meantime, and the directory is fsynced. A crash therefore never leaves a partial key
    /// file at `path`, and two processes racing end up with the same key. An existing file
    /// with wrong content is an error and is never replaced.
    ///
    /// # Errors
    /// [`CryptoError::Io`] if the file or its directory cannot be read or written, and
    /// [`CryptoError::MalformedKeyFile`] if an existing file does not hold a key.
    pub fn load_or_create(path: &Path) -> Result<(MasterKey, bool), CryptoError> {
        match File::open(path) {
            Ok(file) => return Ok((read_key_file(file, path)?, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("open", path, e)),
        }
        let key = MasterKey::generate();
        match create_key_file(path, &key.to_text()) {
            Ok(()) => Ok((key, true)),
            // Another process created the file first; its key is the one to use.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Ok((MasterKey::load(path)?, false))
            }
            Err(e) => Err(io_error("create", path, e)),
        }
    }

    /// A value sealed under this key, stored next to the data so that the next start can
    /// tell whether the same master key is in use before it tries to open anything.
    ///
    /// # Panics
    /// Panics if the system random generator fails.
    pub fn check_value(&self) -> Vec<u8> {
        let mut check = Vec::with_capacity(1 + OVERHEAD + CHECK_PLAINTEXT.len());
        check.push(FORMAT_VERSION);
        aead::seal_into(&self.key, CHECK_DOMAIN, b"", CHECK_PLAINTEXT, &mut check);
        check
    }

    /// The generation id of a check value: the first 8 bytes of its SHA-256, in hex.
    ///
    /// Every check value is sealed with a fresh nonce, so each one recorded in a store (at
    /// first start, and again by each master-key rotation) names one master-key
    /// generation. Key material records the generation that wrapped it, and a node
    /// refuses to wrap once the store's check value is no longer the one it started with.
    /// The id reveals nothing about the key: the check value is not secret either.
    pub fn generation_of(check: &[u8]) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, check);
        digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// True if and only if `check` was produced by [`MasterKey::check_value`] of this key.
    pub fn verify_check_value(&self, check: &[u8]) -> bool {
        match check.split_first() {
            Some((&FORMAT_VERSION, sealed)) => aead::open(&self.key, CHECK_DOMAIN, b"", sealed)
                .is_some_and(|plaintext| plaintext.as_slice() == CHECK_PLAINTEXT),
            _ => false,
        }
    }

    /// Encrypts `key` under the master key. `context` (for example the account and region the
    /// key belongs to) is authenticated, so a wrapped key only unwraps with the same context.
    ///
    /// # Panics
    /// Panics if the system random generator fails.
    pub fn wrap_key(&self, key: &KeyMaterial, context: &[u8]) -> Vec<u8> {
        let mut wrapped = Vec::with_capacity(WRAPPED_KEY_LEN);
        wrapped.push(FORMAT_VERSION);
        aead::seal_into(&self.key, WRAP_DOMAIN, context, key.expose(), &mut wrapped);
        wrapped
    }

    /// Decrypts a key produced by [`MasterKey::wrap_key`] with the same master key and context.
    ///
    /// # Errors
    /// [`CryptoError::MalformedWrappedKey`] if `wrapped` is empty or has the wrong length,
    /// [`CryptoError::UnsupportedVersion`] for an unknown format version, and
    /// [`CryptoError::AuthenticationFailed`] for another master key, another context or
    /// altered bytes.
    pub fn unwrap_key(&self, wrapped: &[u8], context: &[u8]) -> Result<KeyMaterial, CryptoError> {
        let (&version, sealed) = wrapped.split_first().ok_or(CryptoError::MalformedWrappedKey)?;
        if version != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        if wrapped.len() != WRAPPED_KEY_LEN {
            return Err(CryptoError::MalformedWrappedKey);
        }
        let bytes = aead::open(&self.key, WRAP_DOMAIN, context, sealed)
            .ok_or(CryptoError::AuthenticationFailed)?;
        KeyMaterial::from_bytes(&bytes)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> CryptoError {
    CryptoError::Io { action, path: path.to_path_buf(), source }
}

fn read_key_file(file: File, path: &Path) -> Result<MasterKey, CryptoError> {
    let malformed = || CryptoError::MalformedKeyFile { path: path.to_path_buf() };
    // Reserving past the limit means `read_to_end` never grows the buffer (and so never leaves
    // copies of the key behind) for any file that can be a key file.
    let mut text = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut text)
        .map_err(|e| io_error("read", path, e))?;
    if text.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(malformed());
    }
    let text = std::str::from_utf8(&text).map_err(|_| malformed())?;
    MasterKey::from_text(text).map_err(|_| malformed())
}

/// Writes `text` to a new key file at `path` without ever exposing a partial file there.
fn create_key_file(path: &Path, text: &str) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the key file path has no file name")
    })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", URL_SAFE_NO_PAD.encode(random_bytes(9))));
    let temp = dir.join(temp_name);

    let written = write_private_file(&temp, text).and_then(|()| fs::hard_link(&temp, path));
    let removed = remove_temp(&temp, written.is_ok());
    written?;
    removed?;
    sync_dir(dir)
}

/// Removes the temporary file. After a failure its removal is best effort, because the
/// original error is the one worth reporting.
fn remove_temp(temp: &Path, must_succeed: bool) -> io::Result<()> {
    match fs::remove_file(temp) {
        Err(e) if must_succeed && e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn write_private_file(path: &Path, text: &str) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Makes the new directory entry durable, so that a key the server has started using cannot
/// vanish in a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    #[test]
    fn from_text_accepts_base64_of_32_bytes_with_surrounding_whitespace() {
        let bytes: Vec<u8> = (100..132).collect();
        let text = format!("  \n{}\r\n\t", text_of(&bytes));
        let key = MasterKey::from_text(&text).unwrap();
        assert_eq!(&key.key.expose()[..], &bytes[..]);
    }

    #[test]
    fn from_text_rejects_wrong_lengths_and_invalid_base64() {
        for len in [0, 1, 16, 31, 33, 48, 64] {
            let text = text_of(&vec![1u8; len]);
            assert!(matches!(MasterKey::from_text(&text), Err(CryptoError::MalformedKey)), "{len}");
        }
        let valid = text_of(&[1u8; 32]);
        let unpadded = valid.trim_end_matches('=');
        let url_safe = text_of(&[0xfb; 32]).replace('+', "-").replace('/', "_");
        let inner_space = format!("{} {}", &valid[..20], &valid[20..]);
        for text in ["", "   ", "not base64 at all!", unpadded, &url_safe, &inner_space] {
            assert!(matches!(MasterKey::from_text(text), Err(CryptoError::MalformedKey)), "{text}");
        }
    }

    #[test]
    fn to_text_round_trips_through_from_text() {
        let key = MasterKey::generate();
        let text = key.to_text();
        assert_eq!(text.len(), 44);
        let again = MasterKey::from_text(&text).unwrap();
        assert!(again.verify_check_value(&key.check_value()));
    }

    #[test]
    fn from_text_errors_do_not_repeat_the_text() {
        let text = text_of(&[0x5a; 31]);
        let error = MasterKey::from_text(&text).unwrap_err();
        let message = format!("{error} {error:?}");
        assert!(!message.contains(&text[..10]), "{message}");
    }

    #[test]
    fn master_key_debug_prints_stars_and_not_the_key() {
        let key = MasterKey::from_key_material(KeyMaterial::from_bytes(&[0xcd; 32]).unwrap());
        let shown = format!("{key:?}");
        assert_eq!(shown, "***");
        assert!(!format!("{key:#?}").contains(key.to_text().as_str()));
    }

    #[test]
    fn check_values_verify_only_with_the_same_key() {
        let key = MasterKey::generate();
        let other = MasterKey::generate();
        let check = key.check_value();
        assert!(key.verify_check_value(&check));
        assert!(!other.verify_check_value(&check));
        assert!(!key.verify_check_value(&other.check_value()));
        // A fresh nonce each time, yet every check value of the key verifies.
        let second = key.check_value();
        assert_ne!(check, second);
        assert!(key.verify_check_value(&second));
    }

    #[test]
    fn every_check_value_has_its_own_generation_id() {
        let key = MasterKey::generate();
        let (first, second) = (key.check_value(), key.check_value());
        let id = MasterKey::generation_of(&first);
        assert_eq!(id.len(), 16);
        assert_eq!(id, MasterKey::generation_of(&first));
        assert_ne!(id, MasterKey::generation_of(&second));
    }

    #[test]
    fn damaged_check_values_do_not_verify() {
        let key = MasterKey::generate();
        let check = key.check_value();
        assert!(!key.verify_check_value(b""));
        assert!(!key.verify_check_value(&check[..check.len() - 1]));
        for byte in 0..check.len() {
            let mut damaged = check.clone();
            damaged[byte] ^= 0x01;
            assert!(!key.verify_check_value(&damaged), "byte {byte}");
        }
    }

    #[test]
    fn a_wrapped_key_is_not_accepted_as_a_check_value_and_vice_versa() {
        let key = MasterKey::generate();
        let wrapped = key.wrap_key(&KeyMaterial::generate(), b"");
        assert_eq!(wrapped.len(), key.check_value().len());
        assert!(!key.verify_check_value(&wrapped));
        assert!(matches!(
            key.unwrap_key(&key.check_value(), b""),
            Err(CryptoError::AuthenticationFailed)
        ));
    }

    #[test]
    fn wrap_then_unwrap_returns_the_same_key() {
        let master = MasterKey::generate();
        let kek = KeyMaterial::generate();
        let wrapped = master.wrap_key(&kek, b"123456789012/us-east-1");
        assert_eq!(wrapped.len(), WRAPPED_KEY_LEN);
        let unwrapped = master.unwrap_key(&wrapped, b"123456789012/us-east-1").unwrap();
        assert_eq!(unwrapped.expose(), kek.expose());
        assert_ne!(master.wrap_key(&kek, b"123456789012/us-east-1"), wrapped);
    }

    #[test]
    fn a_wrapped_key_does_not_unwrap_in_another_context_or_under_another_master_key() {
        let master = MasterKey::generate();
        let wrapped = master.wrap_key(&KeyMaterial::generate(), b"111111111111/us-east-1");
        for context in [&b"222222222222/us-east-1"[..], b"111111111111/us-west-2", b""] {
            assert!(matches!(
                master.unwrap_key(&wrapped, context),
                Err(CryptoError::AuthenticationFailed)
            ));
        }
        assert!(matches!(
            MasterKey::generate().unwrap_key(&wrapped, b"111111111111/us-east-1"),
            Err(CryptoError::AuthenticationFailed)
        ));
    }

    #[test]
    fn damaged_wrapped_keys_fail_with_the_matching_error() {
        let master = MasterKey::generate();
        let wrapped = master.wrap_key(&KeyMaterial::generate(), b"ctx");
        for byte in 0..wrapped.len() {
            let mut damaged = wrapped.clone();
            damaged[byte] ^= 0x80;
            let result = master.unwrap_key(&damaged, b"ctx");
            if byte == 0 {
                assert!(matches!(result, Err(CryptoError::UnsupportedVersion(0x81))));
            } else {
                assert!(matches!(result, Err(CryptoError::AuthenticationFailed)), "byte {byte}");
            }
        }
        assert!(matches!(master.unwrap_key(b"", b"ctx"), Err(CryptoError::MalformedWrappedKey)));
        for len in 1..wrapped.len() {
            assert!(matches!(
                master.unwrap_key(&wrapped[..len], b"ctx"),
                Err(CryptoError::MalformedWrappedKey)
            ));
        }
        let mut longer = wrapped.clone();
        longer.push(0);
        assert!(matches!(
            master.unwrap_key(&longer, b"ctx"),
            Err(CryptoError::MalformedWrappedKey)
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_its_group_or_others_can_open_is_reported() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::load_or_create(&path).unwrap();
        assert_eq!(MasterKey::exposed_file_mode(&path), None);
        for mode in [0o644, 0o640, 0o604, 0o620] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(MasterKey::exposed_file_mode(&path), Some(mode));
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(MasterKey::exposed_file_mode(&path), None);
        assert_eq!(MasterKey::exposed_file_mode(&dir.path().join("missing")), None);
    }

    #[cfg(unix)]
    #[test]
    fn load_or_create_creates_a_private_file_that_loads_back_as_the_same_key() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (created_key, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = MasterKey::load(&path).unwrap();
        assert!(loaded.verify_check_value(&created_key.check_value()));
        let contents = fs::read_to_string(&path).unwrap();
        assert_eq!(contents, format!("{}\n", created_key.to_text().as_str()));
        // Only the key file remains; the temporary name used while writing is gone.
        let names: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("master.key")]);
    }

    #[test]
    fn a_second_load_or_create_keeps_the_existing_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (first, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        let before = fs::read(&path).unwrap();
        let (second, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(fs::read(&path).unwrap(), before);
        assert!(second.verify_check_value(&first.check_value()));
    }

    #[test]
    fn an_operator_written_key_file_is_loaded_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let operator = MasterKey::generate();
        fs::write(&path, format!("{}\n", operator.to_text().as_str())).unwrap();
        let (loaded, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert!(loaded.verify_check_value(&operator.check_value()));
    }

    #[test]
    fn a_malformed_key_file_is_an_error_and_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let short = text_of(&[0x42; 31]);
        let big = "A".repeat(MAX_KEY_FILE_LEN as usize + 10);
        let contents: [&[u8]; 5] =
            [b"", short.as_bytes(), b"garbage\n", b"\xff\xfe", big.as_bytes()];
        for content in contents {
            fs::write(&path, content).unwrap();
            for result in [MasterKey::load_or_create(&path).map(|(k, _)| k), MasterKey::load(&path)]
            {
                let error = result.unwrap_err();
                assert!(matches!(&error, CryptoError::MalformedKeyFile { path: p } if p == &path));
                let message = error.to_string();
                assert!(message.contains("master.key"), "{message}");
                assert!(!message.contains(&short[..8]), "{message}");
            }
            assert_eq!(fs::read(&path).unwrap(), content);
        }
    }

    #[test]
    fn loading_a_missing_file_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.key");
        let error = MasterKey::load(&path).unwrap_err();
        assert!(
            matches!(&error, CryptoError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(error.to_string().contains("absent.key"));
        assert!(!path.exists());
    }

    #[test]
    fn load_or_create_in_a_missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("master.key");
        let error = MasterKey::load_or_create(&path).unwrap_err();
        assert!(matches!(error, CryptoError::Io { action: "create", .. }));
    }

    #[test]
    fn a_key_file_path_that_is_a_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = MasterKey::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(error, CryptoError::Io { .. }), "{error:?}");
    }
}
