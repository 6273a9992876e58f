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
