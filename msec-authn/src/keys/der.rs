//! The little DER this crate reads: an RSA `RSAPublicKey` (`SEQUENCE { INTEGER n, INTEGER e }`).

/// Reads one TLV, returning (tag, contents, rest). Definite lengths only, at most 4 length bytes.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first & 0x80 == 0 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (lb, rest) = rest.split_at(n);
        (lb.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x)), rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// Splits a DER `RSAPublicKey` into unsigned big-endian (n, e), without leading zero bytes.
pub(crate) fn rsa_public_key(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, seq, rest) = tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (t1, n, rest) = tlv(seq)?;
    let (t2, e, rest) = tlv(rest)?;
    if t1 != 0x02 || t2 != 0x02 || !rest.is_empty() {
        return None;
    }
    Some((strip(n), strip(e)))
}

fn strip(x: &[u8]) -> &[u8] {
    let z = x.iter().take_while(|b| **b == 0).count();
    &x[z..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        // SEQUENCE { INTEGER 0x00C1, INTEGER 0x03 }
        let der = [0x30, 0x07, 0x02, 0x02, 0x00, 0xC1, 0x02, 0x01, 0x03];
        assert_eq!(rsa_public_key(&der), Some((&[0xC1][..], &[0x03][..])));
        assert_eq!(rsa_public_key(&der[..8]), None);
        assert_eq!(rsa_public_key(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(rsa_public_key(&[]), None);
        let mut trailing = der.to_vec();
        trailing.push(0);
        assert_eq!(rsa_public_key(&trailing), None);
    }
}
