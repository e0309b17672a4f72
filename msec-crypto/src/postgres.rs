//! `tokio-postgres` support (feature `postgres`): [`Encrypted<T>`] binds to and reads from `TEXT` / `VARCHAR`
//! columns (the text form) and `BYTEA` columns (the binary form).

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::format::Ciphertext;
use crate::value::Encrypted;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

fn accepts(ty: &Type) -> bool {
    *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::BYTEA
}

impl<T> ToSql for Encrypted<T> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if *ty == Type::BYTEA {
            out.extend_from_slice(self.ciphertext().as_bytes());
        } else {
            out.extend_from_slice(self.to_text().as_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        accepts(ty)
    }

    to_sql_checked!();
}

impl<'a, T> FromSql<'a> for Encrypted<T> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let ct = if *ty == Type::BYTEA {
            Ciphertext::from_bytes(raw.to_vec())?
        } else {
            Ciphertext::from_text(std::str::from_utf8(raw)?)?
        };
        Ok(Encrypted::from_ciphertext(ct))
    }

    fn accepts(ty: &Type) -> bool {
        accepts(ty)
    }
}
