//! Sizes on the command line: `4096`, `64K`, `64M`, `1G`, `1GiB`.

use crate::CliError;

/// Parses a byte size with an optional binary suffix (K, M, G, T; `B`, `iB`
/// accepted after it). Zero is allowed here; callers reject it where it is bad.
pub fn parse_size(s: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "cannot parse size {s:?}: expected a number with an optional K, M, G or T suffix, like 64M"
        ))
    };
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// Clap value parser for sizes.
pub fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("2MB").unwrap(), 2 << 20);
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "M", "1.5G", "-1", "12Q", "99999999999T"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
    }
}
