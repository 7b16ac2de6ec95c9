//! The API's bearer token: generated on first run into a file only its owner can read
//! (0600, in a 0700 directory), read back on later runs, compared in constant time.
//! The token itself is never logged; only the file's path is shown.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading, creating or writing failed.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Group or others may read or write the file.
    #[error("token file {0} is accessible by other users (chmod 600 it)")]
    Permissions(PathBuf),
    /// The file holds no usable token.
    #[error("token file {0} holds no token of at least 32 printable characters")]
    Invalid(PathBuf),
}

/// Shortest token accepted from a file.
pub const MIN_TOKEN_LEN: usize = 32;
/// Longest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

/// The default token file: `$XDG_CONFIG_HOME/emvbridge/api-token`, else
/// `$HOME/.config/emvbridge/api-token`, else `./emvbridge-api-token`.
pub fn default_token_file() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        });
    match base {
        Some(b) => b.join("emvbridge").join("api-token"),
        None => PathBuf::from("emvbridge-api-token"),
    }
}

/// A new random token: 32 bytes from the OS, hex.
pub fn generate_token() -> String {
    use rand::RngCore as _;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Reads the token at `path`, or creates the file with a new token. Returns the token and
/// whether it was created.
///
/// # Errors
/// [`TokenError`]: I/O, a file others can access, or an unusable token.
pub fn load_or_create(path: &Path) -> Result<(String, bool), TokenError> {
    let io = |source| TokenError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            check_private(path, &meta)?;
            if meta.len() > MAX_TOKEN_FILE {
                return Err(TokenError::Invalid(path.to_owned()));
            }
            let text = std::fs::read_to_string(path).map_err(io)?;
            let token = text.trim();
            if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(TokenError::Invalid(path.to_owned()));
            }
            Ok((token.to_owned(), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_private_dir(dir).map_err(io)?;
            }
            let token = generate_token();
            let mut f = create_private_file(path).map_err(io)?;
            f.write_all(format!("{token}\n").as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok((token, true))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), TokenError> {
    use std::os::unix::fs::PermissionsExt as _;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(TokenError::Permissions(path.to_owned()));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::Metadata) -> Result<(), TokenError> {
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// The expected token, kept only as its SHA-256 so comparisons take the same time whatever
/// the presented token's length or content.
#[derive(Clone)]
pub struct TokenCheck {
    digest: [u8; 32],
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCheck(..)")
    }
}

impl TokenCheck {
    /// Checks against `token`.
    pub fn new(token: &str) -> TokenCheck {
        TokenCheck {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `presented` is the token: both are hashed, then compared in constant time.
    pub fn verify(&self, presented: &[u8]) -> bool {
        let d: [u8; 32] = Sha256::digest(presented).into();
        d[..].ct_eq(&self.digest[..]).into()
    }

    /// Checks an `Authorization` header value (`Bearer <token>`, scheme case-insensitive).
    pub fn verify_header(&self, value: &[u8]) -> bool {
        let Some((scheme, rest)) = value
            .iter()
            .position(|b| *b == b' ')
            .map(|i| value.split_at(i))
        else {
            return false;
        };
        scheme.eq_ignore_ascii_case(b"bearer") && self.verify(rest.trim_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "emvbridge-auth-{name}-{}-{}",
            std::process::id(),
            generate_token().get(..8).unwrap_or("x")
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn creates_private_then_reads_back() {
        let dir = tmpdir("create");
        let path = dir.join("sub").join("api-token");
        let (t1, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(t1.len(), 64);
        assert!(t1.bytes().all(|b| b.is_ascii_hexdigit()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dmode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
        let (t2, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(t1, t2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_readable_and_short_tokens() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tmpdir("perm");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tok");
        std::fs::write(&path, "a".repeat(40)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(TokenError::Permissions(_))
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_or_create(&path).unwrap().0, "a".repeat(40));
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(load_or_create(&path), Err(TokenError::Invalid(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn verifies_bearer_headers() {
        let c = TokenCheck::new("s3cret-token");
        assert!(c.verify(b"s3cret-token"));
        assert!(!c.verify(b"s3cret-toke"));
        assert!(!c.verify(b""));
        assert!(c.verify_header(b"Bearer s3cret-token"));
        assert!(c.verify_header(b"bearer   s3cret-token "));
        assert!(!c.verify_header(b"Basic s3cret-token"));
        assert!(!c.verify_header(b"Bearers3cret-token"));
        assert!(!c.verify_header(b"Bearer wrong"));
        assert_eq!(format!("{c:?}"), "TokenCheck(..)");
    }
}
