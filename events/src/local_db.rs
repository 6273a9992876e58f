//! Opening a local sled database (the agent's state, the read models), one way.

use std::path::Path;
use std::time::{Duration, Instant};

/// The most a database keeps cached in memory. sled's default is 1 GiB, which a read
/// model of ten thousand agents fills: the process's memory then grows to it.
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Opens a sled database with a cache of [`CACHE_BYTES`], waiting up to 2 s while its
/// file lock is still held: sled's background flusher releases it a moment after the last
/// handle of a closed database is dropped, so a reopen in the same process (or right
/// after a restart) may find it busy. A lock held for longer (another live process) is
/// still an error.
pub fn open_sled(path: &Path) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let config = sled::Config::new().path(path).cache_capacity(CACHE_BYTES);
        match config.open() {
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::Other
                    && e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}
