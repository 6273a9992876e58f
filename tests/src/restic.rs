//! Real restic for tests: a temporary repository with its password file, restic run
//! against it, and data to back up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A restic repository in a directory the caller owns, opened with a password file.
#[derive(Debug, Clone)]
pub struct Repo {
    pub path: PathBuf,
    pub password_file: PathBuf,
}

impl Repo {
    /// Initialises a repository at `<dir>/repo` with the password in `<dir>/password`.
    /// Panics with how to install restic when it is missing.
    pub fn init(dir: &Path, password: &str) -> Repo {
        let repo = Repo {
            path: dir.join("repo"),
            password_file: dir.join("password"),
        };
        std::fs::write(&repo.password_file, password)
            .unwrap_or_else(|e| panic!("password file: {e}"));
        let out = repo.restic(&["init"]);
        assert!(
            out.status.success(),
            "restic init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        repo
    }

    /// Runs restic with `args` on this repository (without a cache).
    pub fn restic(&self, args: &[&str]) -> Output {
        Command::new("restic")
            .args(args)
            .arg("--no-cache")
            .env("RESTIC_REPOSITORY", &self.path)
            .env("RESTIC_PASSWORD_FILE", &self.password_file)
            .output()
            .unwrap_or_else(|e| {
                panic!("restic did not run ({e}): install it with `apt-get install -y restic`")
            })
    }

    /// `restic snapshots --json`'s output.
    pub fn snapshots_json(&self) -> String {
        String::from_utf8_lossy(&self.restic(&["snapshots", "--json"]).stdout).into_owned()
    }
}

/// `restic version`'s output.
pub fn version_output() -> String {
    let out = Command::new("restic")
        .arg("version")
        .output()
        .unwrap_or_else(|e| {
            panic!("restic did not run ({e}): install it with `apt-get install -y restic`")
        });
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `mib` MiB of incompressible bytes (xorshift) into files of 64 MiB in `dir`, so
/// a backup of it takes a while.
pub fn incompressible_data(dir: &Path, mib: usize) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("data dir: {e}"));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for n in 0..mib.div_ceil(64) {
        let mut file = std::fs::File::create(dir.join(format!("blob-{n}")))
            .unwrap_or_else(|e| panic!("data file: {e}"));
        for _ in 0..64.min(mib - n * 64) {
            for byte in chunk.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *byte = seed as u8;
            }
            file.write_all(&chunk)
                .unwrap_or_else(|e| panic!("data: {e}"));
        }
    }
}
