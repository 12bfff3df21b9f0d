//! The `georelay switchover` and `georelay failover` commands: argument files read, the
//! orchestration run on a runtime, its table printed, and the exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use georelay::dr::failover::{self, FailoverArgs};
use georelay::dr::redis::Auth;
use georelay::dr::switchover::{self, SwitchoverArgs};

use super::{runtime, EXIT_CONFIG};

/// (user, password, password file) as given on the command line.
pub type AuthFlags = (Option<String>, Option<String>, Option<PathBuf>);

pub struct Switch {
    pub origin: String,
    pub site: String,
    pub region: String,
    pub promote: String,
    pub token_file: PathBuf,
    pub origin_auth: AuthFlags,
    pub promote_auth: AuthFlags,
    pub timeout: String,
}

pub struct Fail {
    pub region: String,
    pub promote: String,
    pub token_file: PathBuf,
    pub promote_auth: AuthFlags,
    pub timeout: String,
}

const EXIT_FAILED: u8 = 1;

fn read_secret(what: &str, path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|t| t.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))
        .and_then(|t| {
            if t.is_empty() {
                Err(format!("{what}: {} is empty", path.display()))
            } else {
                Ok(t)
            }
        })
}

pub fn auth(flag: &str, (user, password, file): AuthFlags) -> Result<Auth, String> {
    let password = match (password, file) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "--{flag}-password and --{flag}-password-file: give one"
            ))
        }
        (Some(p), None) => Some(p),
        (None, Some(f)) => Some(read_secret(&format!("--{flag}-password-file"), &f)?),
        (None, None) => None,
    };
    if user.is_some() && password.is_none() {
        return Err(format!(
            "--{flag}-user needs --{flag}-password or --{flag}-password-file"
        ));
    }
    Ok(Auth { user, password })
}

pub fn timeout(text: &str) -> Result<Duration, String> {
    let t = georelay::units::parse_duration(text).map_err(|e| format!("--timeout: {e}"))?;
    if t < Duration::from_millis(100) {
        return Err("--timeout: must be at least 100ms".into());
    }
    Ok(t)
}

fn usage(cmd: &str, e: String) -> ExitCode {
    eprintln!("georelay {cmd}: {e}");
    ExitCode::from(EXIT_CONFIG)
}

pub fn switchover(a: Switch) -> ExitCode {
    let args = match (|| {
        Ok::<_, String>(SwitchoverArgs {
            token: read_secret("--token-file", &a.token_file)?,
            origin_auth: auth("origin", a.origin_auth)?,
            promote_auth: auth("promote", a.promote_auth)?,
            timeout: timeout(&a.timeout)?,
            origin: a.origin,
            site: a.site,
            region: a.region,
            promote: a.promote,
        })
    })() {
        Ok(args) => args,
        Err(e) => return usage("switchover", e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let outcome = rt.block_on(switchover::run(&args));
    finish(outcome.failed.is_some(), &outcome.render())
}

/// Prints the outcome (to stderr when it failed) and gives the exit code.
fn finish(failed: bool, text: &str) -> ExitCode {
    if failed {
        eprint!("{text}");
        ExitCode::from(EXIT_FAILED)
    } else {
        print!("{text}");
        ExitCode::SUCCESS
    }
}

pub fn failover(a: Fail) -> ExitCode {
    let args = match (|| {
        Ok::<_, String>(FailoverArgs {
            token: read_secret("--token-file", &a.token_file)?,
            promote_auth: auth("promote", a.promote_auth)?,
            timeout: timeout(&a.timeout)?,
            region: a.region,
            promote: a.promote,
        })
    })() {
        Ok(args) => args,
        Err(e) => return usage("failover", e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let outcome = rt.block_on(failover::run(&args));
    finish(outcome.failed.is_some(), &outcome.render(&args))
}
