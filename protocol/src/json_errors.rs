//! Decoding errors in the client's terms: where (the path of the field), and what was wrong,
//! without the names of the server's Rust types.

/// A JSON decoding error in the client's terms: where, and what was wrong, without the names
/// of the server's types.
pub fn describe_json_path_error(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = error.inner();
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("not valid JSON: {}", plain_json_message(inner))
        }
        serde_json::error::Category::Data | serde_json::error::Category::Io => {
            describe_path(error.path().to_string(), inner)
        }
    }
}

pub fn describe_path(path: String, error: &impl std::fmt::Display) -> String {
    let message = plain_message(&error.to_string());
    if path == "." || path.is_empty() {
        message
    } else {
        format!("{path}: {message}")
    }
}

/// serde_json's message without its position suffix, for syntax errors.
fn plain_json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    format!("{text} (line {}, column {})", error.line(), error.column())
}

/// A serde message with Rust's names replaced by the client's: `struct X` is an object, the
/// integer types are integers, and positions are dropped (the path says where).
pub fn plain_message(text: &str) -> String {
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut text = text.to_owned();
    if let Some(start) = text.find("struct ") {
        let end = text[start..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ' '))
            .map_or(text.len(), |offset| start + offset);
        text.replace_range(start..end, "a JSON object");
    }
    for (rust, plain) in [
        ("i64", "an integer"),
        ("u64", "a non-negative integer"),
        ("i32", "an integer"),
        ("u32", "a non-negative integer"),
        ("u16", "a non-negative integer"),
        ("u8", "a non-negative integer"),
        ("f64", "a number"),
        ("enum ", "one of the names "),
    ] {
        text = text.replace(rust, plain);
    }
    text
}
