//! The `[admin]` section: the bearer token (`admin.token_file`) that guards the admin
//! listener's mutating endpoints (`POST`/`DELETE /upstream`); without it they are disabled.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    token_file: Option<PathBuf>,
}

/// Shortest token accepted: guessing must not be practical.
const MIN_TOKEN_LEN: usize = 16;

/// Reads the token (trailing newline stripped); `None` when no token file is configured.
pub(super) fn validate_admin(
    raw: RawAdmin,
    base: &Path,
    problems: &mut Problems,
) -> Option<String> {
    let file = base.join(raw.token_file?);
    match std::fs::read_to_string(&file) {
        Ok(t) => {
            let t = t.trim_end_matches(['\r', '\n']).to_string();
            if t.len() < MIN_TOKEN_LEN || t.chars().any(char::is_whitespace) {
                problems.bad(
                    "admin.token_file",
                    format!(
                        "the token in {} must be at least {MIN_TOKEN_LEN} characters, without spaces",
                        file.display()
                    ),
                );
                None
            } else {
                Some(t)
            }
        }
        Err(e) => {
            problems.bad(
                "admin.token_file",
                format!("cannot read {}: {e}", file.display()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_read_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Problems::default();
        assert_eq!(
            validate_admin(RawAdmin::default(), dir.path(), &mut p),
            None
        );
        std::fs::write(dir.path().join("tok"), "0123456789abcdef\n").unwrap();
        let raw = RawAdmin {
            token_file: Some("tok".into()),
        };
        assert_eq!(
            validate_admin(raw, dir.path(), &mut p).as_deref(),
            Some("0123456789abcdef")
        );
        assert!(p.is_empty());
        std::fs::write(dir.path().join("short"), "abc").unwrap();
        for f in ["short", "missing"] {
            let raw = RawAdmin {
                token_file: Some(f.into()),
            };
            assert_eq!(validate_admin(raw, dir.path(), &mut p), None);
        }
        let lines = p.into_lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().all(|m| m.starts_with("admin.token_file: ")));
    }
}
