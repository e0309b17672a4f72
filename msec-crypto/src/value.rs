//! Typed encrypted fields: [`Encrypted<T>`] holds only ciphertext and serialises only as the ciphertext text, so
//! a struct with encrypted fields can be stored, logged or sent without leaking the values.

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::context::Context;
use crate::error::Error;
use crate::format::Ciphertext;
use crate::keyring::Keyring;

/// A value that can be encrypted: how it becomes plaintext bytes and back. Strings and byte vectors are stored
/// as they are, numbers big-endian, `bool` as one byte, anything serde can handle through [`Json`].
pub trait FieldValue: Sized {
    /// The plaintext bytes.
    fn to_plaintext(&self) -> Result<Zeroizing<Vec<u8>>, Error>;
    /// Back from the plaintext bytes.
    fn from_plaintext(bytes: &[u8]) -> Result<Self, Error>;
}

impl FieldValue for String {
    fn to_plaintext(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        Ok(Zeroizing::new(self.as_bytes().to_vec()))
    }
    fn from_plaintext(bytes: &[u8]) -> Result<Self, Error> {
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::Value("not UTF-8".into()))
    }
}

impl FieldValue for Vec<u8> {
    fn to_plaintext(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        Ok(Zeroizing::new(self.clone()))
    }
    fn from_plaintext(bytes: &[u8]) -> Result<Self, Error> {
        Ok(bytes.to_vec())
    }
}

impl FieldValue for bool {
    fn to_plaintext(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        Ok(Zeroizing::new(vec![u8::from(*self)]))
    }
    fn from_plaintext(bytes: &[u8]) -> Result<Self, Error> {
        match bytes {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(Error::Value("not a bool".into())),
        }
    }
}

macro_rules! numeric {
    ($($t:ty),*) => {$(
        impl FieldValue for $t {
            fn to_plaintext(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
                Ok(Zeroizing::new(self.to_be_bytes().to_vec()))
            }
            fn from_plaintext(bytes: &[u8]) -> Result<Self, Error> {
                let arr = bytes.try_into().map_err(|_| Error::Value(concat!("not a ", stringify!($t)).into()))?;
                Ok(<$t>::from_be_bytes(arr))
            }
        }
    )*};
}
numeric!(i16, i32, i64, u16, u32, u64, f32, f64);

/// Any serde value, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

impl<T: Serialize + DeserializeOwned> FieldValue for Json<T> {
    fn to_plaintext(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        serde_json::to_vec(&self.0)
            .map(Zeroizing::new)
            .map_err(|e| Error::Value(e.to_string()))
    }
    fn from_plaintext(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes)
            .map(Json)
            .map_err(|e| Error::Value(e.to_string()))
    }
}

/// An encrypted `T`. It holds only the ciphertext: serde writes it as the text form (`msec:v1:...`), reading it
/// back validates the format, and only [`open`](Encrypted::open) with the keyring and the same context yields
/// the value.
///
/// ```
/// use msec_crypto::{Algorithm, Context, Encrypted, Keyring};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct User { id: u64, email: Encrypted<String> }
///
/// let keyring = Keyring::generate(Algorithm::Aes256Gcm)?;
/// let ctx = Context::new("users", "email", "7");
/// let user = User { id: 7, email: Encrypted::seal(&keyring, &"bob@example.org".to_string(), &ctx)? };
/// let json = serde_json::to_string(&user).unwrap();
/// assert!(json.contains("\"email\":\"msec:v1:") && !json.contains("bob"));
/// let back: User = serde_json::from_str(&json).unwrap();
/// assert_eq!(back.email.open(&keyring, &ctx)?, "bob@example.org");
/// assert!(back.email.open(&keyring, &Context::new("users", "email", "8")).is_err());
/// # Ok::<(), msec_crypto::Error>(())
/// ```
pub struct Encrypted<T> {
    ct: Ciphertext,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Encrypted<T> {
    fn clone(&self) -> Self {
        Self::from_ciphertext(self.ct.clone())
    }
}

impl<T> PartialEq for Encrypted<T> {
    fn eq(&self, other: &Self) -> bool {
        self.ct == other.ct
    }
}

impl<T> Eq for Encrypted<T> {}

impl<T> fmt::Debug for Encrypted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Encrypted<{}>({:?})", std::any::type_name::<T>(), self.ct)
    }
}

impl<T> Encrypted<T> {
    /// Wraps a ciphertext (it is authenticated only when opened).
    pub fn from_ciphertext(ct: Ciphertext) -> Self {
        Self { ct, _t: PhantomData }
    }

    /// Parses the text form.
    pub fn from_text(text: &str) -> Result<Self, Error> {
        Ciphertext::from_text(text).map(Self::from_ciphertext)
    }

    /// The ciphertext.
    pub fn ciphertext(&self) -> &Ciphertext {
        &self.ct
    }

    /// The ciphertext, by value.
    pub fn into_ciphertext(self) -> Ciphertext {
        self.ct
    }

    /// The text form.
    pub fn to_text(&self) -> String {
        self.ct.to_text()
    }

    /// Re-encrypts under the keyring's primary key without exposing the value.
    pub fn rewrap(&self, keyring: &Keyring, context: &Context) -> Result<Self, Error> {
        keyring.rewrap(&self.ct, context).map(Self::from_ciphertext)
    }
}

impl<T: FieldValue> Encrypted<T> {
    /// Encrypts `value` for `context` under the keyring's primary key.
    pub fn seal(keyring: &Keyring, value: &T, context: &Context) -> Result<Self, Error> {
        let pt = value.to_plaintext()?;
        keyring.encrypt(&pt, context).map(Self::from_ciphertext)
    }

    /// Decrypts the value; `context` must be the one it was sealed for.
    pub fn open(&self, keyring: &Keyring, context: &Context) -> Result<T, Error> {
        let pt = keyring.decrypt(&self.ct, context)?;
        T::from_plaintext(&pt)
    }
}

impl<T> Serialize for Encrypted<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.ct.to_text())
    }
}

impl<'de, T> Deserialize<'de> for Encrypted<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_text(&s).map_err(serde::de::Error::custom)
    }
}
