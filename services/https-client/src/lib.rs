//! HTTPS clients: rustls with the ring provider (already built for async-nats) and the
//! system's root certificates, plus an optional CA file (a private CA in front of a
//! receiver or the API).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A rustls client configuration trusting the system's roots and `extra_ca`.
pub fn client_config(extra_ca: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "a system root certificate could not be read");
    }
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("cannot read the CA certificates in {}", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "{} holds no PEM certificate",
            path.display()
        );
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("a certificate in {} is not a CA", path.display()))?;
        }
    } else if added == 0 {
        tracing::warn!(
            "no system root certificates found: HTTPS to public hosts will fail (install ca-certificates)"
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// An HTTP(S) client with `timeout` per request and the TLS configuration above.
pub fn http_client(extra_ca: Option<&Path>, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(extra_ca)?)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("restic-fleet/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}
