//! How a service or an agent connects to NATS: its nkey (the seed in a 0600 file, never
//! logged), the CA that signed the server's TLS certificate, and its inbox prefix.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::NatsServers;

/// Why credentials could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} does not hold a NATS user seed (a line starting with SU)", .0.display())]
    NotASeed(PathBuf),
}

/// What a client presents to NATS besides the URL.
#[derive(Clone, Default)]
pub struct NatsAccess {
    /// The user seed (`SU…`) to sign the server's nonce with; `None` connects without
    /// credentials (a server without authorization, or the enrolling user).
    seed: Option<String>,
    /// The CA certificate (PEM) that signed the server's certificate: TLS is required.
    pub ca_file: Option<PathBuf>,
    /// Replies come to subjects below this prefix (`_INBOX` when `None`).
    pub inbox_prefix: Option<String>,
}

/// Never prints the seed.
impl fmt::Debug for NatsAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsAccess")
            .field("seed", &self.seed.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

impl NatsAccess {
    /// Access without a key, trusting `ca_file` for TLS when given.
    pub fn tls(ca_file: Option<PathBuf>) -> Self {
        Self {
            ca_file,
            ..Self::default()
        }
    }

    /// Access with the key pair `key`.
    pub fn with_key(mut self, key: &nkeys::KeyPair) -> Self {
        self.seed = key.seed().ok();
        self
    }

    /// Access with the seed in `path`.
    pub fn with_seed_file(mut self, path: &Path) -> Result<Self, CredentialsError> {
        self.seed = Some(read_key(path)?.seed().map_err(|_| not_a_seed(path))?);
        Ok(self)
    }

    /// The async-nats options for this access.
    pub fn options(&self) -> async_nats::ConnectOptions {
        let mut options = async_nats::ConnectOptions::new();
        if let Some(seed) = &self.seed {
            options = options.nkey(seed.clone());
        }
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some(prefix) = &self.inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        options
    }

    /// Connects to one of `servers` (each tried in turn), once (no retry).
    pub async fn connect(
        &self,
        servers: &NatsServers,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        self.options().connect(servers.addrs().to_vec()).await
    }
}

fn not_a_seed(path: &Path) -> CredentialsError {
    CredentialsError::NotASeed(path.to_owned())
}

/// The user key pair whose seed is in `path`.
pub fn read_key(path: &Path) -> Result<nkeys::KeyPair, CredentialsError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Io {
        what: "read",
        path: path.to_owned(),
        source,
    })?;
    let seed = text
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("SU"))
        .ok_or_else(|| not_a_seed(path))?;
    nkeys::KeyPair::from_seed(seed).map_err(|_| not_a_seed(path))
}

/// The user key pair in `path`, created (a new random key, the file 0600, written
/// atomically) when the file does not exist.
pub fn load_or_create_key(path: &Path) -> Result<nkeys::KeyPair, CredentialsError> {
    if path.exists() {
        return read_key(path);
    }
    let key = nkeys::KeyPair::new_user();
    let seed = key.seed().map_err(|_| not_a_seed(path))?;
    write_private(path, &format!("{seed}\n"))?;
    Ok(key)
}

/// Writes `text` to `path` readable by its owner only: a temporary file, synced, renamed.
pub fn write_private(path: &Path, text: &str) -> Result<(), CredentialsError> {
    let io = |what| {
        let path = path.to_owned();
        move |source| CredentialsError::Io { what, path, source }
    };
    let temp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io("create"))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io("restrict"))?;
    file.write_all(text.as_bytes()).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))?;
    std::fs::rename(&temp, path).map_err(io("rename"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("fleet-key-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("nats.nk");
        let created = load_or_create_key(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create_key(&path).expect("read");
        assert_eq!(again.public_key(), created.public_key());
        let access = NatsAccess::default().with_seed_file(&path).expect("seed");
        let printed = format!("{access:?}");
        assert!(printed.contains("<redacted>"), "a seed is held: {printed}");
        assert!(!printed.contains("SU"), "the seed is never printed");
        std::fs::write(&path, "garbage").expect("write");
        assert!(matches!(
            read_key(&path),
            Err(CredentialsError::NotASeed(_))
        ));
        std::fs::remove_dir_all(&dir).ok();
    }
}
