//! The keys every section that connects to a Redis as a client shares (`[upstream]` towards
//! the master, `[target]` in apply mode): the password and its file, the username, and TLS.

use std::path::{Path, PathBuf};

use super::problems::{host_of, Problems};
use crate::redistls::ClientTls;

/// `username`, `password` and `password_file` of one section, as written.
pub(super) struct RawAuth<'a> {
    pub(super) username: Option<&'a str>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
}

/// `tls`, `tls_ca`, `tls_cert`, `tls_key` and `tls_server_name` of one section, as written.
pub(super) struct RawClientTls {
    pub(super) tls: Option<bool>,
    pub(super) ca: Option<PathBuf>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) server_name: Option<String>,
}

/// The password of `section` (`password`, or the first line of `password_file` read relative
/// to `base`); a username needs one.
pub(super) fn password(
    section: &str,
    raw: RawAuth<'_>,
    base: &Path,
    problems: &mut Problems,
) -> Option<String> {
    let file_key = format!("{section}.password_file");
    let password = match (raw.password, raw.password_file) {
        (Some(_), Some(_)) => {
            problems.bad(
                &file_key,
                format!("set either {section}.password or {section}.password_file, not both"),
            );
            None
        }
        (Some(p), None) => Some(p),
        (None, Some(f)) => {
            let f = base.join(f);
            match std::fs::read_to_string(&f) {
                Ok(p) => Some(p.trim_end_matches(['\r', '\n']).to_string()),
                Err(e) => {
                    problems.bad(&file_key, format!("cannot read {}: {e}", f.display()));
                    None
                }
            }
        }
        (None, None) => None,
    };
    if raw.username.is_some() && password.is_none() {
        problems.bad(
            &format!("{section}.username"),
            format!("needs {section}.password or {section}.password_file"),
        );
    }
    password
}

/// TLS towards the server at `addr` when `section.tls = true`: a readable CA, a client
/// certificate and key both or neither; the server name defaults to `addr`'s host.
pub(super) fn client_tls(
    section: &str,
    raw: RawClientTls,
    addr: &str,
    base: &Path,
    problems: &mut Problems,
) -> Option<ClientTls> {
    if !raw.tls.unwrap_or(false) {
        return None;
    }
    let ca_key = format!("{section}.tls_ca");
    let ca = problems.readable(&ca_key, base, raw.ca);
    if ca.is_none() {
        problems.bad(&ca_key, format!("is required with {section}.tls = true"));
    }
    let cert = problems.readable(&format!("{section}.tls_cert"), base, raw.cert);
    let key = problems.readable(&format!("{section}.tls_key"), base, raw.key);
    if cert.is_some() != key.is_some() {
        problems.bad(
            &format!("{section}.tls_key"),
            format!("set both {section}.tls_cert and {section}.tls_key, or neither"),
        );
    }
    Some(ClientTls {
        ca: ca.unwrap_or_default(),
        cert,
        key,
        server_name: raw.server_name.unwrap_or_else(|| host_of(addr)),
    })
}
