//! CHAP credentials in the config: per ACL entry, per target (the default for its
//! initiators), and for discovery sessions. Secrets come inline or from a file and
//! are checked at load: at least 12 bytes (RFC 7143 §12.1.3 asks for 96 bits), not
//! the same in both directions, a secret file not readable by everyone.

use std::path::PathBuf;

use iscsi::chap::{ChapPolicy, Credentials, Secret};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Ctx;

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET: usize = 12;
/// Longest, in bytes.
pub const MAX_SECRET: usize = 256;

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChap {
    pub(super) user: Spanned<String>,
    pub(super) secret: Option<Spanned<String>>,
    pub(super) secret_file: Option<Spanned<String>>,
    pub(super) target_user: Option<Spanned<String>>,
    pub(super) target_secret: Option<Spanned<String>>,
    pub(super) target_secret_file: Option<Spanned<String>>,
}

impl std::fmt::Debug for RawChap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawChap")
            .field("user", self.user.get_ref())
            .field(
                "target_user",
                &self.target_user.as_ref().map(|u| u.get_ref()),
            )
            .finish_non_exhaustive()
    }
}

/// A secret and where it came from (kept so the model writes back the file, not
/// the secret it holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretConfig {
    pub value: Secret,
    pub file: Option<PathBuf>,
}

/// Validated CHAP credentials: the initiator's, and the target's own for mutual
/// CHAP when the initiator asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapConfig {
    pub user: String,
    pub secret: SecretConfig,
    pub target: Option<(String, SecretConfig)>,
}

impl ChapConfig {
    pub fn policy(&self) -> ChapPolicy {
        ChapPolicy {
            initiator: Credentials {
                user: self.user.clone(),
                secret: self.secret.value.clone(),
            },
            target: self.target.as_ref().map(|(user, s)| Credentials {
                user: user.clone(),
                secret: s.value.clone(),
            }),
        }
    }
}

fn read_secret(
    cx: &mut Ctx<'_>,
    key: &str,
    inline: &Option<Spanned<String>>,
    file: &Option<Spanned<String>>,
    anchor: std::ops::Range<usize>,
) -> Option<SecretConfig> {
    let (value, from, span) = match (inline, file) {
        (Some(s), None) => (s.get_ref().as_bytes().to_vec(), None, s.span()),
        (None, Some(f)) => {
            let path = PathBuf::from(f.get_ref());
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    cx.err(
                        Some(f.span()),
                        &format!("{key}_file"),
                        format!("{}: {e}", path.display()),
                    );
                    return None;
                }
            };
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o004 != 0 {
                cx.err(
                    Some(f.span()),
                    &format!("{key}_file"),
                    format!(
                        "{} is readable by everyone (mode {mode:o}); make it 0600",
                        path.display()
                    ),
                );
                return None;
            }
            match std::fs::read(&path) {
                Ok(mut b) => {
                    while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                        b.pop();
                    }
                    (b, Some(path), f.span())
                }
                Err(e) => {
                    cx.err(
                        Some(f.span()),
                        &format!("{key}_file"),
                        format!("{}: {e}", path.display()),
                    );
                    return None;
                }
            }
        }
        (Some(s), Some(_)) => {
            cx.err(
                Some(s.span()),
                key,
                format!("give {key} or {key}_file, not both"),
            );
            return None;
        }
        (None, None) => {
            cx.err(
                Some(anchor),
                key,
                format!("{key} or {key}_file is required"),
            );
            return None;
        }
    };
    if !(MIN_SECRET..=MAX_SECRET).contains(&value.len()) {
        cx.err(
            Some(span),
            key,
            format!(
                "a CHAP secret must be {MIN_SECRET} to {MAX_SECRET} bytes (this one is {})",
                value.len()
            ),
        );
        return None;
    }
    Some(SecretConfig {
        value: Secret::new(value),
        file: from,
    })
}

/// Validates `raw` (the table at `key`); errors go to `cx` with file and line.
pub(super) fn validate(cx: &mut Ctx<'_>, raw: &RawChap, key: &str) -> Option<ChapConfig> {
    let anchor = raw.user.span();
    if raw.user.get_ref().is_empty() {
        cx.err(
            Some(anchor.clone()),
            &format!("{key}.user"),
            "empty user name",
        );
    }
    let secret = read_secret(
        cx,
        &format!("{key}.secret"),
        &raw.secret,
        &raw.secret_file,
        anchor.clone(),
    );
    let target = match &raw.target_user {
        None => {
            if raw.target_secret.is_some() || raw.target_secret_file.is_some() {
                cx.err(
                    Some(anchor.clone()),
                    &format!("{key}.target_user"),
                    "a target secret needs target_user",
                );
            }
            None
        }
        Some(u) => read_secret(
            cx,
            &format!("{key}.target_secret"),
            &raw.target_secret,
            &raw.target_secret_file,
            u.span(),
        )
        .map(|s| (u.get_ref().clone(), s)),
    };
    let secret = secret?;
    if let Some((_, t)) = &target {
        if t.value == secret.value {
            cx.err(
                Some(anchor),
                &format!("{key}.target_secret"),
                "the same secret in both directions (RFC 7143 §12.1.3 forbids it)",
            );
            return None;
        }
    }
    if raw.user.get_ref().is_empty() {
        return None;
    }
    Some(ChapConfig {
        user: raw.user.get_ref().clone(),
        secret,
        target,
    })
}

/// The config-file form of validated credentials (the model written back).
#[derive(Serialize)]
pub(super) struct OutChap {
    user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_secret_file: Option<String>,
}

fn split(s: &SecretConfig) -> (Option<String>, Option<String>) {
    match &s.file {
        Some(f) => (None, Some(f.display().to_string())),
        None => (
            Some(String::from_utf8_lossy(s.value.expose()).into_owned()),
            None,
        ),
    }
}

impl OutChap {
    pub(super) fn of(c: &ChapConfig) -> Self {
        let (secret, secret_file) = split(&c.secret);
        let (target_user, (target_secret, target_secret_file)) = match &c.target {
            Some((u, s)) => (Some(u.clone()), split(s)),
            None => (None, (None, None)),
        };
        Self {
            user: c.user.clone(),
            secret,
            secret_file,
            target_user,
            target_secret,
            target_secret_file,
        }
    }
}
