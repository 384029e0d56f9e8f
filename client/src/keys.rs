//! Participant keys: the one text form of an Ed25519 public key, and PKCS#8 PEM key files
//! that are written 0600 and refused when others can read them.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// The prefix of the text form of a public key.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// An Ed25519 public key that names a participant. Its text form, used everywhere (CLI,
/// policies, JSON, pages), is `ed25519:` followed by the 32 key bytes in lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublicKeyError {
    #[error("a public key is written `ed25519:` and 64 hex digits; got {0:?}")]
    BadText(String),
    #[error("a public key has 32 bytes, got {0}")]
    BadLength(usize),
    #[error("{0} is not a valid Ed25519 public key (not a curve point)")]
    NotOnCurve(String),
    #[error("{0} is a weak Ed25519 public key (small order) and cannot sign")]
    Weak(String),
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PublicKeyError> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| PublicKeyError::BadLength(bytes.len()))?;
        Ok(PublicKey(array))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as a curve point, refusing points that are invalid or of small order: a
    /// small-order key would let anyone forge "signatures" that verify for it.
    pub fn verifying_key(&self) -> Result<VerifyingKey, PublicKeyError> {
        let key = VerifyingKey::from_bytes(&self.0)
            .map_err(|_| PublicKeyError::NotOnCurve(self.to_string()))?;
        if key.is_weak() {
            return Err(PublicKeyError::Weak(self.to_string()));
        }
        Ok(key)
    }
}

impl From<&VerifyingKey> for PublicKey {
    fn from(key: &VerifyingKey) -> Self {
        PublicKey(key.to_bytes())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_KEY_PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PublicKey {
    type Err = PublicKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s
            .trim()
            .strip_prefix(PUBLIC_KEY_PREFIX)
            .ok_or_else(|| PublicKeyError::BadText(s.to_owned()))?;
        if hex_part.len() != 64 {
            return Err(PublicKeyError::BadText(s.to_owned()));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|_| PublicKeyError::BadText(s.to_owned()))?;
        Ok(PublicKey(bytes))
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write key file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
    #[error(
        "key file {path} can be read by other users (mode {mode:o}); run `chmod 600 {path}` \
         before using it"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("key file {path} is not a PKCS#8 PEM Ed25519 private key")]
    NotAKey { path: PathBuf },
}

/// Generates a new signing key from the operating system's random source.
pub fn generate_signing_key() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// Writes `key` as a PKCS#8 PEM file readable by its owner only (mode 0600). Refuses to
/// overwrite an existing file: losing a key means losing an identity. The file appears whole
/// or not at all (written aside, synced, then linked into place), so a reader racing the
/// writer, or a crash, never sees half a key.
pub fn write_signing_key(path: &Path, key: &SigningKey) -> Result<(), KeyFileError> {
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| KeyFileError::Write {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
    write_new_file(path, pem.as_bytes(), 0o600).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists {
                path: path.to_owned(),
            }
        } else {
            KeyFileError::Write {
                path: path.to_owned(),
                source,
            }
        }
    })
}

/// Creates `path` with `bytes` and `mode`, atomically and durably, failing with
/// `AlreadyExists` if it exists.
pub fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    if path.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "file exists",
        ));
    }
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        // A hard link, unlike a rename, never replaces an existing file.
        fs::hard_link(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Reads a PKCS#8 PEM signing key, refusing a file that group or others can read.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let read_err = |source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).map_err(read_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let pem = fs::read_to_string(path).map_err(read_err)?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyFileError::NotAKey {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let key = generate_signing_key();
        let public = PublicKey::from(&key.verifying_key());
        let text = public.to_string();
        assert!(text.starts_with("ed25519:"));
        assert_eq!(text.len(), 8 + 64);
        assert_eq!(text.parse::<PublicKey>(), Ok(public));
    }

    #[test]
    fn bad_text_forms_are_refused() {
        for bad in [
            "",
            "ed25519:",
            "ed25519:zz",
            "ssh-ed25519 AAAA",
            &format!("ed25519:{}", "0".repeat(63)),
        ] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point, encoded: small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = PublicKey::from_bytes(&identity).unwrap();
        assert!(matches!(key.verifying_key(), Err(PublicKeyError::Weak(_))));
    }

    #[test]
    fn key_files_are_private_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("producer.pem");
        let key = generate_signing_key();
        write_signing_key(&path, &key).unwrap();
        assert_eq!(read_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
        assert!(matches!(
            write_signing_key(&path, &key),
            Err(KeyFileError::Exists { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                read_signing_key(&path),
                Err(KeyFileError::TooOpen { .. })
            ));
        }
    }
}
