//! The rules of names and passwords, and small helpers of the identity area. Names are checked
//! when they are created; logins look them up as stored.

use std::net::IpAddr;

use nodegrid_protocol::auth::UserIdentity;

use super::IdentityError;
use super::store::UserRow;
use crate::text::has_deceptive_characters;

/// Names longer than this are not looked up at login (no stored name is longer).
pub(super) const MAX_LOOKUP_NAME_CHARS: usize = 255;

/// The longest password accepted, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// The default shortest password, in characters.
pub const DEFAULT_PASSWORD_MIN_LENGTH: usize = 8;

/// A new username: 3 to 32 characters of `[A-Za-z0-9_.-]`, starting with a letter or digit and
/// not ending with `.`. Checked when a name is created; logins look names up as stored.
pub fn validate_username(username: &str) -> Result<String, IdentityError> {
    let username = username.trim();
    let valid_chars = username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    let starts_well = username
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ends_well = !username.ends_with('.');
    if !(3..=32).contains(&username.len()) || !valid_chars || !starts_well || !ends_well {
        return Err(IdentityError::Validation(
            "username must be 3 to 32 characters of letters, digits, '_', '.', '-', starting with a letter or digit and not ending with '.'".into(),
        ));
    }
    Ok(username.to_owned())
}

/// The client's network for per-username limits: its /24 (IPv4) or /64 (IPv6).
pub(super) fn client_network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
    }
}

/// A new password: `min_length` to 128 characters. Only passwords being set are checked;
/// existing ones (imported, or set under an older rule) keep working.
pub(super) fn validate_password(password: &str, min_length: usize) -> Result<(), IdentityError> {
    let length = password.chars().count();
    if !(min_length..=MAX_PASSWORD_CHARS).contains(&length) {
        return Err(IdentityError::Validation(format!(
            "password must be {min_length} to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

pub(super) fn validate_device_id(device_id: &str) -> Result<String, IdentityError> {
    let device_id = device_id.trim();
    if device_id.is_empty() || device_id.len() > 128 || has_deceptive_characters(device_id) {
        return Err(IdentityError::Validation(
            "device_id must be 1 to 128 printable characters".into(),
        ));
    }
    Ok(device_id.to_owned())
}

pub(super) fn identity_of(user: &UserRow) -> UserIdentity {
    UserIdentity {
        user_id: user.id,
        username: user.username.clone(),
        role: user.role,
    }
}

pub(super) fn user_target(user: &UserRow) -> String {
    format!("user:{}", user.id)
}

pub(super) fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked_at_the_edge() {
        assert_eq!(validate_username(" ada_l ").unwrap(), "ada_l");
        for bad in ["ab", "-ada", "ada lovelace", "ädä", "ada.", &"a".repeat(33)] {
            assert!(validate_username(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_password("short", 8).is_err());
        assert!(validate_password("long enough", 8).is_ok());
        assert!(validate_password("pass123", 6).is_ok());
        assert!(validate_password(&"x".repeat(129), 6).is_err());
    }
}
