//! `restic version` output and what each version can do.

use std::fmt;

use super::OutputError;

/// A restic release, as printed by `restic version`; ordered by release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResticVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ResticVersion {
    /// The release `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Reads `restic version` output such as
    /// `restic 0.14.0 compiled with go1.19.8 on linux/amd64`. Pre-release suffixes
    /// (`0.16.0-dev`) are ignored; a missing patch is 0.
    pub fn parse(output: &str) -> Result<Self, OutputError> {
        let mut words = output.split_whitespace();
        while let Some(word) = words.next() {
            if word == "restic"
                && let Some(version) = words.clone().next().and_then(parse_number)
            {
                return Ok(version);
            }
        }
        Err(OutputError::NotVersion(
            output.trim().chars().take(200).collect(),
        ))
    }

    /// Exit codes 10 (no repository), 11 (lock failed) and 130 (interrupted) exist from
    /// 0.17.0.
    pub fn has_typed_exit_codes(&self) -> bool {
        *self >= Self::new(0, 17, 0)
    }

    /// Exit code 12 (wrong password) exists from 0.17.1.
    pub fn has_wrong_password_exit_code(&self) -> bool {
        *self >= Self::new(0, 17, 1)
    }

    /// `--retry-lock` exists from 0.16.0.
    pub fn has_retry_lock(&self) -> bool {
        *self >= Self::new(0, 16, 0)
    }

    /// `restore --json` (status lines while it restores) exists from 0.16.0.
    pub fn has_restore_json(&self) -> bool {
        *self >= Self::new(0, 16, 0)
    }
}

impl fmt::Display for ResticVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// `0.14.0`, `v0.14.0`, `0.16.0-dev` or `0.9` as a version.
fn parse_number(word: &str) -> Option<ResticVersion> {
    let word = word.strip_prefix('v').unwrap_or(word);
    let end = word
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(word.len());
    let mut parts = word[..end].split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(patch) => patch.parse().ok()?,
        None => 0,
    };
    Some(ResticVersion::new(major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_installed_debian_version_line() {
        let version = ResticVersion::parse(crate::restic::captured::VERSION);
        assert_eq!(version, Ok(ResticVersion::new(0, 14, 0)));
    }

    #[test]
    fn parses_newer_and_development_builds() {
        let cases = [
            (
                "restic 0.17.3 compiled with go1.23.3 on linux/amd64",
                (0, 17, 3),
            ),
            (
                "restic 0.16.0-dev (compiled manually) compiled with go1.20",
                (0, 16, 0),
            ),
            (
                "restic v0.18.0 compiled with go1.24.1 on darwin/arm64",
                (0, 18, 0),
            ),
            ("restic 0.9 compiled with go1.13", (0, 9, 0)),
            (
                "debug enabled\nrestic 1.2.3 compiled with go1.30",
                (1, 2, 3),
            ),
        ];
        for (text, (major, minor, patch)) in cases {
            let version = ResticVersion::parse(text);
            assert_eq!(
                version,
                Ok(ResticVersion::new(major, minor, patch)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_other_output() {
        for text in [
            "",
            "restic",
            "bash: restic: command not found",
            "restic x.y.z",
        ] {
            assert!(ResticVersion::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn orders_by_release() {
        assert!(ResticVersion::new(0, 9, 6) < ResticVersion::new(0, 14, 0));
        assert!(ResticVersion::new(0, 17, 3) < ResticVersion::new(1, 0, 0));
        assert_eq!(ResticVersion::new(0, 14, 0).to_string(), "0.14.0");
    }

    #[test]
    fn capabilities_follow_the_release_notes() {
        let v = ResticVersion::new;
        let old = v(0, 14, 0);
        assert!(!old.has_typed_exit_codes() && !old.has_retry_lock());
        assert!(v(0, 16, 0).has_retry_lock() && !v(0, 16, 4).has_typed_exit_codes());
        assert!(!v(0, 15, 2).has_restore_json() && v(0, 16, 0).has_restore_json());
        assert!(v(0, 17, 0).has_typed_exit_codes() && !v(0, 17, 0).has_wrong_password_exit_code());
        assert!(v(0, 17, 1).has_wrong_password_exit_code());
    }
}
