//! Masking for display and logs (data minimisation): keep just enough to recognise a value.
//!
//! ```
//! use msec_crypto::mask;
//! use std::net::IpAddr;
//!
//! assert_eq!(mask::email("alice@example.org"), "a***@example.org");
//! assert_eq!(mask::phone("+44 20 7946 0958"), "+** ** **** **58");
//! assert_eq!(mask::card("4111 1111 1111 1111"), "**** **** **** 1111");
//! assert_eq!(mask::ip("192.0.2.77".parse::<IpAddr>().unwrap()).to_string(), "192.0.2.0");
//! assert_eq!(mask::ip("2001:db8:abcd:12::1".parse::<IpAddr>().unwrap()).to_string(), "2001:db8:abcd::");
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `alice@example.org` → `a***@example.org`: the first character of the local part, a fixed `***` (so the
/// length does not leak), the domain. Without an `@` the whole value becomes `***`.
pub fn email(value: &str) -> String {
    match value.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        _ => "***".to_owned(),
    }
}

/// Replaces every digit but the last two with `*`, keeping `+` and separators: `+44 20 7946 0958` →
/// `+** ** **** **58`.
pub fn phone(value: &str) -> String {
    mask_digits(value, 2)
}

/// Replaces every digit but the last four with `*`, keeping separators (PCI DSS allows showing the last four):
/// `4111 1111 1111 1111` → `**** **** **** 1111`. Numbers with fewer than 8 digits are masked entirely.
pub fn card(value: &str) -> String {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    mask_digits(value, if digits < 8 { 0 } else { 4 })
}

fn mask_digits(value: &str, keep_last: usize) -> String {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen + keep_last > digits { c } else { '*' }
            } else {
                c
            }
        })
        .collect()
}

/// An IPv4 address truncated to its /24.
pub fn ipv4(addr: Ipv4Addr) -> Ipv4Addr {
    let [a, b, c, _] = addr.octets();
    Ipv4Addr::new(a, b, c, 0)
}

/// An IPv6 address truncated to its /48. IPv4-mapped addresses (`::ffff:a.b.c.d`) are truncated as IPv4 (/24).
pub fn ipv6(addr: Ipv6Addr) -> Ipv6Addr {
    if let Some(v4) = addr.to_ipv4_mapped() {
        return ipv4(v4).to_ipv6_mapped();
    }
    let s = addr.segments();
    Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0)
}

/// An address truncated to /24 (IPv4) or /48 (IPv6).
pub fn ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(ipv4(a)),
        IpAddr::V6(a) => IpAddr::V6(ipv6(a)),
    }
}

/// Parses and truncates an address written as text; `None` when it is not an IP address.
pub fn ip_str(value: &str) -> Option<String> {
    value.trim().parse::<IpAddr>().ok().map(|a| ip(a).to_string())
}
