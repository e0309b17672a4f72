//! Small text helpers the msec crates share on their per-request paths.

/// The decimal digits of `n`, written at the end of `buf` and returned as a slice of it — no formatting
/// machinery and no allocation (headers, audit framing and decision details format numbers on every request).
///
/// ```
/// let mut buf = [0u8; 20];
/// assert_eq!(msec_core::text::decimal(&mut buf, 1_000_000), b"1000000");
/// assert_eq!(msec_core::text::decimal(&mut buf, u64::MAX), b"18446744073709551615");
/// ```
pub fn decimal(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        #[test]
        fn decimal_matches_to_string(n: u64) {
            let mut buf = [0u8; 20];
            let want = n.to_string();
            proptest::prop_assert_eq!(super::decimal(&mut buf, n), want.as_bytes());
        }
    }
}
