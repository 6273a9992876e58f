//! The notifier's secrets: target URLs and signing keys by tenant and name, read from a
//! YAML file only the notifier reads. Never in the log, never in a log line.
//!
//! ```yaml
//! acme:
//!   slack-ops: https://hooks.slack.com/services/T000/B000/XXXX
//!   ops-hook-key: 6f1c…
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Secrets by tenant, then by name.
#[derive(Default, Clone)]
pub struct Secrets {
    path: Option<PathBuf>,
    by_tenant: HashMap<String, HashMap<String, String>>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count: usize = self.by_tenant.values().map(HashMap::len).sum();
        write!(f, "Secrets({count} entries from {:?})", self.path)
    }
}

impl Secrets {
    /// Reads `path`; every problem of the file in one error, values never quoted.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the notifier's secrets {}", path.display()))?;
        let by_tenant: HashMap<String, HashMap<String, String>> = serde_norway::from_str(&text)
            .map_err(|e| {
                // The parser's message may quote the offending value: give only where.
                let at = e
                    .location()
                    .map_or_else(String::new, |l| format!(" at line {}", l.line()));
                anyhow::anyhow!(
                    "{} is not a map of tenant → name → secret{at}",
                    path.display()
                )
            })?;
        Ok(Self {
            path: Some(path.to_owned()),
            by_tenant,
        })
    }

    /// The secret `name` of `tenant`, or a message saying where it is missing.
    pub fn get(&self, tenant: &str, name: &str) -> Result<&str, String> {
        self.by_tenant
            .get(tenant)
            .and_then(|m| m.get(name))
            .map(String::as_str)
            .ok_or_else(|| match &self.path {
                Some(p) => format!(
                    "secret {name:?} of tenant {tenant} is not in the notifier's secrets file {}",
                    p.display()
                ),
                None => format!(
                    "secret {name:?} of tenant {tenant}: the notifier has no secrets file \
                     (--notify-secrets)"
                ),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.yaml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn secrets_are_found_by_tenant_and_name_and_a_missing_one_says_where() {
        let (_dir, path) = file("acme:\n  hook: https://h.example/x?token=abc\n");
        let secrets = Secrets::load(&path).expect("loads");
        assert_eq!(
            secrets.get("acme", "hook"),
            Ok("https://h.example/x?token=abc")
        );
        let missing = secrets.get("other", "hook").expect_err("other tenant");
        assert!(missing.contains("secrets.yaml"), "{missing}");
        assert!(
            !format!("{secrets:?}").contains("token"),
            "Debug hides values"
        );
    }

    #[test]
    fn the_shipped_placeholder_loads_empty() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/secrets/notifier-secrets.yaml");
        let secrets = Secrets::load(&path).expect("the compose placeholder loads");
        assert!(secrets.get("acme", "x").is_err());
    }

    #[test]
    fn a_malformed_file_never_quotes_its_values() {
        let (_dir, path) = file("acme:\n  hook: [s3cr3t-value\n");
        let error = format!("{:#}", Secrets::load(&path).expect_err("malformed"));
        assert!(!error.contains("s3cr3t"), "{error}");
        assert!(error.contains("line"), "{error}");
    }
}
