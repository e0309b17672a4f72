//! Small helpers.

/// Makes an attacker-controlled string safe for logs and audit details: printable ASCII only (others become
/// `?`), at most 64 characters (then `...`).
pub(crate) fn sanitize(s: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect();
    if s.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes() {
        assert_eq!(sanitize("../../etc/passwd"), "../../etc/passwd");
        assert_eq!(sanitize("a\nb\u{202e}c"), "a?b?c");
        assert_eq!(sanitize(&"x".repeat(100)).len(), 67);
    }
}
