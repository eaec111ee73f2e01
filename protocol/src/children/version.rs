//! Dotted version numbers (`1.4.2`, `v2.0`, `1.4.2-rc.1`) compared by their numbers.

use std::cmp::Ordering;

/// Longest version text accepted.
pub const MAX_VERSION_CHARS: usize = 64;

/// A version's numeric parts; `None` when the text is not a version (`v` prefix allowed; a
/// `-pre` or `+build` suffix is ignored: a pre-release counts as its release).
pub fn parse(text: &str) -> Option<Vec<u64>> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_VERSION_CHARS {
        return None;
    }
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    let core = text.split(['-', '+']).next()?;
    let parts: Option<Vec<u64>> = core.split('.').map(|part| part.parse().ok()).collect();
    parts.filter(|parts| !parts.is_empty() && parts.len() <= 8)
}

/// Orders two parsed versions, missing parts counting as 0 (`1.2` = `1.2.0`).
pub fn compare(left: &[u64], right: &[u64]) -> Ordering {
    let length = left.len().max(right.len());
    (0..length)
        .map(|index| {
            let a = left.get(index).copied().unwrap_or(0);
            let b = right.get(index).copied().unwrap_or(0);
            a.cmp(&b)
        })
        .find(|ordering| ordering.is_ne())
        .unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_their_numbers() {
        let v = |text| parse(text).expect(text);
        assert_eq!(compare(&v("1.10.0"), &v("1.9.9")), Ordering::Greater);
        assert_eq!(compare(&v("v1.2"), &v("1.2.0")), Ordering::Equal);
        assert_eq!(compare(&v("1.2.0-rc.1"), &v("1.2.0")), Ordering::Equal);
        assert_eq!(compare(&v("0.9"), &v("1")), Ordering::Less);
        assert_eq!(parse("one.two"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("1..2"), None);
    }
}
