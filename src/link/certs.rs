//! `georelay certs init`: a development CA and node certificates for mutual TLS between agents.
//!
//! Layout in the target directory: `ca.pem`, `ca.key`, and per node `<name>.pem`, `<name>.key`.
//! Keys are ECDSA P-256, written with mode 0600. An existing CA is reused, so nodes can be
//! added later; existing node files are only replaced with `force`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::LinkError;

/// Validity of generated certificates, in years from the start of the current year.
const VALID_YEARS: i32 = 10;

/// Creates (or reuses) the CA in `dir` and a certificate and key for each node name.
/// Returns the files written, in order. Refuses to replace an existing node file unless `force`.
pub fn init(dir: &Path, nodes: &[String], force: bool) -> Result<Vec<PathBuf>, LinkError> {
    for name in nodes {
        check_name(name)?;
    }
    let ca_pem = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    if !force {
        for name in nodes {
            for path in [node_cert(dir, name), node_key(dir, name)] {
                if path.exists() {
                    return Err(LinkError::Exists { path });
                }
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| LinkError::WriteFile {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    let (issuer, _) = if ca_pem.exists() || ca_key.exists() {
        load_ca(&ca_pem, &ca_key)?
    } else {
        let (cert, key) = new_ca(dir)?;
        write_file(&ca_pem, cert.as_bytes(), false)?;
        write_file(&ca_key, key.serialize_pem().as_bytes(), true)?;
        written.push(ca_pem.clone());
        written.push(ca_key.clone());
        load_ca(&ca_pem, &ca_key)?
    };
    for name in nodes {
        let key = KeyPair::generate()?;
        let cert = node_params(name)?.signed_by(&key, &issuer)?;
        let (cert_path, key_path) = (node_cert(dir, name), node_key(dir, name));
        write_file(&cert_path, cert.pem().as_bytes(), false)?;
        write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
        written.push(cert_path);
        written.push(key_path);
    }
    Ok(written)
}

/// Test convenience: [`init`] with `force`, for string-slice names.
pub fn make_test_pki(dir: &Path, nodes: &[&str]) -> Result<(), LinkError> {
    let nodes: Vec<String> = nodes.iter().map(|s| s.to_string()).collect();
    init(dir, &nodes, true).map(|_| ())
}

fn node_cert(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.pem"))
}

fn node_key(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.key"))
}

/// Node names become file names and DNS SANs: letters, digits, '-', '.', first a letter or digit.
fn check_name(name: &str) -> Result<(), LinkError> {
    let ok = name.len() <= 253
        && name
            .as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && name != "ca";
    if ok {
        Ok(())
    } else {
        Err(LinkError::BadNodeName(name.to_string()))
    }
}

fn this_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Good to within a day around New Year, which the one-year margin below absorbs.
    1970 + i32::try_from(secs / 31_556_952).unwrap_or(0)
}

fn set_validity(params: &mut CertificateParams) {
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + VALID_YEARS, 1, 1);
}

fn new_ca(dir: &Path) -> Result<(String, KeyPair), LinkError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let label = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("georelay dev CA {label}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "georelay");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key))
}

fn load_ca(ca_pem: &Path, ca_key: &Path) -> Result<(Issuer<'static, KeyPair>, String), LinkError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| LinkError::ReadFile {
            path: path.to_path_buf(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(ca_pem)?, read(ca_key)?);
    let key = KeyPair::from_pem(&key_pem).map_err(|e| LinkError::Pem {
        path: ca_key.to_path_buf(),
        detail: format!("not a usable CA key: {e}"),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| LinkError::Pem {
        path: ca_pem.to_path_buf(),
        detail: format!("not a usable CA certificate: {e}"),
    })?;
    Ok((issuer, cert_pem))
}

fn node_params(name: &str) -> Result<CertificateParams, LinkError> {
    let sans = vec![
        name.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "georelay");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    Ok(params)
}

/// Writes a file whole; `secret` files get mode 0600 from creation on (Unix).
fn write_file(path: &Path, data: &[u8], secret: bool) -> Result<(), LinkError> {
    let err = |source| LinkError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(if secret { 0o600 } else { 0o644 });
        let mut file = opts.open(path).map_err(err)?;
        // An overwritten file keeps its old mode; set it explicitly.
        if secret {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
        }
        file.write_all(data).map_err(err)?;
        file.sync_all().map_err(err)
    }
    #[cfg(not(unix))]
    {
        let _ = secret;
        let mut file = opts.open(path).map_err(err)?;
        file.write_all(data).map_err(err)?;
        file.sync_all().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn init_writes_files_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let out = init(dir.path(), &names(&["a", "b.example"]), false).unwrap();
        let files: Vec<_> = out
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            files,
            [
                "ca.pem",
                "ca.key",
                "a.pem",
                "a.key",
                "b.example.pem",
                "b.example.key"
            ]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in &out {
                let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
                let want = if p.extension().is_some_and(|e| e == "key") {
                    0o600
                } else {
                    0o644
                };
                assert_eq!(mode, want, "{}", p.display());
            }
        }
    }

    #[test]
    fn refuses_overwrite_without_force_and_reuses_ca() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &names(&["a"]), false).unwrap();
        let ca_before = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let key_before = std::fs::read(dir.path().join("a.key")).unwrap();

        let err = init(dir.path(), &names(&["a"]), false).unwrap_err();
        assert!(matches!(err, LinkError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read(dir.path().join("a.key")).unwrap(), key_before);

        // Adding a node reuses the CA; force replaces node files but keeps the CA.
        let out = init(dir.path(), &names(&["b"]), false).unwrap();
        assert_eq!(out.len(), 2);
        init(dir.path(), &names(&["a"]), true).unwrap();
        assert_ne!(std::fs::read(dir.path().join("a.key")).unwrap(), key_before);
        assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
    }

    #[test]
    fn bad_names_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "../x", "a/b", "-a", ".hidden", "ca", "a b"] {
            let err = init(dir.path(), &names(&[bad]), false).unwrap_err();
            assert!(matches!(err, LinkError::BadNodeName(_)), "{bad:?}: {err}");
        }
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn node_cert_has_sans() {
        let dir = tempfile::tempdir().unwrap();
        make_test_pki(dir.path(), &["edge-1"]).unwrap();
        let pem = std::fs::read(dir.path().join("edge-1.pem")).unwrap();
        let certs = super::super::tls::load_certs(&dir.path().join("edge-1.pem")).unwrap();
        assert!(!pem.is_empty());
        let (_, x509) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
        let san = x509.subject_alternative_name().unwrap().unwrap();
        use x509_parser::extensions::GeneralName;
        let got: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                    _ => std::net::IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
                },
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(got, ["edge-1", "localhost", "127.0.0.1", "::1"]);
        let eku = x509.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
    }
}
