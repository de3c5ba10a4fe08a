//! Text key=value pairs (RFC 7143 §6): NUL-separated `key=value` strings in the data
//! segment of Login and Text PDUs.

/// Why a text data segment is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("text key segment is not UTF-8")]
    NotUtf8,
    #[error("text pair {0:?} has no '='")]
    NoEquals(String),
    #[error("key {0:?} is longer than 63 bytes or empty")]
    BadKeyName(String),
    #[error("value of {0:?} is longer than 8192 bytes")]
    ValueTooLong(String),
    #[error("key {0:?} appears twice")]
    Duplicate(String),
}

/// Ordered key=value pairs as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextPairs(pub Vec<(String, String)>);

impl TextPairs {
    /// Parses a complete text segment. Trailing NULs and empty strings between pairs are
    /// tolerated (initiators differ); a pair without '=' is an error.
    pub fn parse(data: &[u8]) -> Result<Self, KeyError> {
        Self::parse_inner(data, false)
    }

    /// Parses a segment where keys may repeat: SendTargets responses list one
    /// TargetName/TargetAddress group per target (RFC 7143 Appendix C).
    pub fn parse_list(data: &[u8]) -> Result<Self, KeyError> {
        Self::parse_inner(data, true)
    }

    fn parse_inner(data: &[u8], repeats: bool) -> Result<Self, KeyError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for raw in data.split(|&b| b == 0) {
            if raw.is_empty() {
                continue;
            }
            let s = std::str::from_utf8(raw).map_err(|_| KeyError::NotUtf8)?;
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| KeyError::NoEquals(s.to_owned()))?;
            if k.is_empty() || k.len() > 63 {
                return Err(KeyError::BadKeyName(k.to_owned()));
            }
            if v.len() > 8192 {
                return Err(KeyError::ValueTooLong(k.to_owned()));
            }
            if !repeats && pairs.iter().any(|(pk, _)| pk == k) {
                return Err(KeyError::Duplicate(k.to_owned()));
            }
            pairs.push((k.to_owned(), v.to_owned()));
        }
        Ok(Self(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn push(&mut self, key: &str, value: impl Into<String>) {
        self.0.push((key.to_owned(), value.into()));
    }

    /// Encodes as NUL-terminated `key=value` strings.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_login_segment() {
        let p =
            TextPairs::parse(b"InitiatorName=iqn.1994-05.com.x:a\0SessionType=Normal\0").unwrap();
        assert_eq!(p.get("SessionType"), Some("Normal"));
        assert_eq!(p.0.len(), 2);
    }

    #[test]
    fn rejects_bad_pairs() {
        assert!(matches!(
            TextPairs::parse(b"NoEquals\0"),
            Err(KeyError::NoEquals(_))
        ));
        assert!(matches!(
            TextPairs::parse(b"A=1\0A=2\0"),
            Err(KeyError::Duplicate(_))
        ));
        assert!(matches!(
            TextPairs::parse(b"=1\0"),
            Err(KeyError::BadKeyName(_))
        ));
        assert_eq!(TextPairs::parse(&[0xff, b'=', 0]), Err(KeyError::NotUtf8));
    }

    proptest! {
        #[test]
        fn roundtrip(pairs in proptest::collection::btree_map("[A-Za-z][A-Za-z0-9.]{0,20}", "[ -<>-~]{0,40}", 0..8)) {
            let mut t = TextPairs::default();
            for (k, v) in &pairs { t.push(k, v.clone()); }
            prop_assert_eq!(TextPairs::parse(&t.encode()).unwrap(), t);
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = TextPairs::parse(&data);
        }
    }
}
