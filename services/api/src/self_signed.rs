//! A private certificate authority and a server certificate it signed, made on request
//! (`fleet up --api-tls-self-signed`) so the API can serve HTTPS before an operator has a
//! real certificate: clients trust the CA's file (`fleet --api-ca-file`).
//!
//! Made once into a directory and kept: a restart reuses them, so clients keep trusting
//! the same CA. They are made again, with a new CA, only when the names asked for change
//! or the certificate has less than [`RENEW_BEFORE_DAYS`] left; the CA's key is never
//! written, so nothing but a new CA can sign another certificate.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::https::TlsFiles;
use fleet_events::store::connect::write_private;

/// How long a made certificate is valid.
const VALID_DAYS: i64 = 2 * 365;
/// A certificate with less than this left is made again at start.
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// What was made, and for which names until when.
const RECORD: &str = "self-signed.txt";

/// The files of a made certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfSigned {
    /// The server's certificate (followed by the CA's) and key, for the API.
    pub files: TlsFiles,
    /// The CA's certificate: what clients trust.
    pub ca: PathBuf,
    /// The names (DNS names and IP addresses) the certificate is valid for.
    pub names: Vec<String>,
    pub expires: DateTime<Utc>,
    /// Made by this call (false: the files in the directory were reused).
    pub made: bool,
    /// Made in place of an earlier CA, which clients may still trust.
    pub replaced: bool,
}

/// The certificate in `dir` for `names`, made (with a new CA) unless one valid for
/// exactly these names for [`RENEW_BEFORE_DAYS`] more days is there.
pub fn ensure(dir: &Path, names: &[String], now: DateTime<Utc>) -> anyhow::Result<SelfSigned> {
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let ca = dir.join("ca.pem");
    let have = std::fs::read_to_string(dir.join(RECORD))
        .ok()
        .and_then(|text| read_record(&text));
    let complete = [&files.cert, &files.key, &ca].iter().all(|f| f.exists());
    if let Some((recorded, expires)) = have
        && complete
        && recorded == names
        && expires - now > TimeDelta::days(RENEW_BEFORE_DAYS)
    {
        return Ok(SelfSigned {
            files,
            ca,
            names: recorded,
            expires,
            made: false,
            replaced: false,
        });
    }
    let replaced = ca.exists();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // The record goes first and comes back last: a process killed between the files
    // (a new CA beside an old certificate) leaves no record, so the next start makes
    // them all again instead of reusing a CA that did not sign the certificate.
    match std::fs::remove_file(dir.join(RECORD)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("removing the certificate's old record"),
    }
    let expires = now + TimeDelta::days(VALID_DAYS);
    let (ca_pem, cert_pem, key_pem) = make(names, now, expires)?;
    std::fs::write(&ca, ca_pem).with_context(|| format!("writing {}", ca.display()))?;
    std::fs::write(&files.cert, cert_pem)
        .with_context(|| format!("writing {}", files.cert.display()))?;
    write_private(&files.key, &key_pem)?;
    let record = format!(
        "names: {}\nexpires: {}\n",
        names.join(","),
        expires.to_rfc3339()
    );
    std::fs::write(dir.join(RECORD), record).context("writing the certificate's record")?;
    Ok(SelfSigned {
        files,
        ca,
        names: names.to_vec(),
        expires,
        made: true,
        replaced,
    })
}

/// The names and expiry a record holds.
fn read_record(text: &str) -> Option<(Vec<String>, DateTime<Utc>)> {
    let mut names = None;
    let mut expires = None;
    for line in text.lines() {
        match line.split_once(": ") {
            Some(("names", list)) => names = Some(list.split(',').map(str::to_owned).collect()),
            Some(("expires", at)) => expires = DateTime::parse_from_rfc3339(at).ok(),
            _ => {}
        }
    }
    Some((names?, expires?.with_timezone(&Utc)))
}

/// A new CA, and a server certificate for `names` it signed: (CA, certificate chain, key)
/// as PEM.
fn make(
    names: &[String],
    now: DateTime<Utc>,
    expires: DateTime<Utc>,
) -> anyhow::Result<(String, String, String)> {
    let day = |t: DateTime<Utc>| rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8);
    let mut authority = CertificateParams::default();
    authority.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    authority
        .distinguished_name
        .push(DnType::CommonName, "restic-fleet API (self-signed)");
    authority.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    authority.not_before = day(now - TimeDelta::days(1));
    authority.not_after = day(expires);
    let ca =
        CertifiedIssuer::self_signed(authority, KeyPair::generate()?).context("making the CA")?;
    let mut server = CertificateParams::new(names.to_vec())
        .with_context(|| format!("a certificate for {}", names.join(", ")))?;
    server.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("fleet", String::as_str),
    );
    // Client authentication too: nats-server nodes present it to each other on their
    // routes (cluster TLS with `verify`).
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    server.not_before = day(now - TimeDelta::days(1));
    server.not_after = day(expires);
    let key = KeyPair::generate()?;
    let signed = server
        .signed_by(&key, &ca)
        .context("signing the certificate")?;
    Ok((ca.pem(), signed.pem() + &ca.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn names() -> Vec<String> {
        vec![
            "localhost".into(),
            "127.0.0.1".into(),
            "backup.example".into(),
        ]
    }

    #[test]
    fn made_once_then_reused_until_the_names_change_or_it_nears_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
        let first = ensure(dir.path(), &names(), now).unwrap();
        assert!(first.made && !first.replaced);
        assert_eq!(first.expires, now + TimeDelta::days(VALID_DAYS));
        let pem = std::fs::read_to_string(&first.ca).unwrap();

        let again = ensure(dir.path(), &names(), now + TimeDelta::days(30)).unwrap();
        assert!(!again.made, "reused");
        assert_eq!(std::fs::read_to_string(&again.ca).unwrap(), pem);

        let mut more = names();
        more.push("10.0.0.5".into());
        let renamed = ensure(dir.path(), &more, now + TimeDelta::days(30)).unwrap();
        assert!(renamed.made && renamed.replaced, "other names: made again");
        assert_ne!(
            std::fs::read_to_string(&renamed.ca).unwrap(),
            pem,
            "a new CA"
        );

        let late = renamed.expires - TimeDelta::days(RENEW_BEFORE_DAYS - 1);
        assert!(ensure(dir.path(), &more, late).unwrap().made, "renewed");

        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&renamed.files.key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner reads the key");
        // Killed while making new files: the old record is gone, so they are made again.
        std::fs::remove_file(dir.path().join(RECORD)).unwrap();
        assert!(
            ensure(dir.path(), &more, late).unwrap().made,
            "no record: made again"
        );
        // The API loads what was made.
        super::super::https::server_config(&renamed.files).expect("a usable pair");
    }
}
