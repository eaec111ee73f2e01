//! Secrets out of what is logged and audited: query strings with tokens in them.
//!
//! Sockets and some clients pass credentials in the URL (`?token=…`). Anything that records a
//! query string (the audit log's `admin.read` entries, log lines) records it through
//! [`redact_query`], which keeps every parameter's name and replaces the value of the ones that
//! carry secrets.

/// Parameter names whose values are secrets (compared without case).
const SECRET_PARAMETERS: [&str; 10] = [
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "password",
    "secret",
    "api_key",
    "apikey",
    "key",
    "signature",
];

/// `query` with the values of secret-bearing parameters replaced by `***`.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret(name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_secret(name: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    SECRET_PARAMETERS
        .iter()
        .any(|secret| decoded.eq_ignore_ascii_case(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_and_everything_else_kept() {
        assert_eq!(
            redact_query("token=eyJhbGc.x.y&role=producer"),
            "token=***&role=producer"
        );
        assert_eq!(
            redact_query("Access_Token=a&TOKEN=b"),
            "Access_Token=***&TOKEN=***"
        );
        assert_eq!(redact_query("%74oken=sneaky"), "%74oken=***");
        assert_eq!(redact_query("page=2"), "page=2");
        assert_eq!(redact_query(""), "");
    }
}
