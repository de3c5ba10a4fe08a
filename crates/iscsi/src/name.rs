//! iSCSI name validation (RFC 3720 §3.2.6, carried into RFC 7143 §4.2.7).

/// Why a string is not a valid iSCSI name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("iSCSI name is empty")]
    Empty,
    #[error("iSCSI name is longer than 223 bytes")]
    TooLong,
    #[error("iSCSI name must start with \"iqn.\", \"eui.\" or \"naa.\"")]
    BadPrefix,
    #[error("iqn name must be iqn.YYYY-MM.reversed.domain[:identifier]")]
    BadIqn,
    #[error("eui name must be \"eui.\" followed by 16 hex digits")]
    BadEui,
    #[error("naa name must be \"naa.\" followed by 16 or 32 hex digits")]
    BadNaa,
    #[error("iSCSI name contains character {0:?}, which stringprep would change or forbid")]
    BadChar(char),
}

/// Checks `name` is a well-formed iqn., eui. or naa. name in its normalised
/// (lower-case) form.
pub fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 223 {
        return Err(NameError::TooLong);
    }
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    if let Some(rest) = name.strip_prefix("iqn.") {
        for c in rest.chars() {
            if !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')) {
                return Err(NameError::BadChar(c));
            }
        }
        let b = rest.as_bytes();
        // YYYY-MM.
        let date_ok = b.len() > 8
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[5..7].iter().all(u8::is_ascii_digit)
            && b[7] == b'.';
        let month = std::str::from_utf8(b.get(5..7).unwrap_or(b"00"))
            .ok()
            .and_then(|m| m.parse::<u8>().ok())
            .unwrap_or(0);
        if !date_ok || !(1..=12).contains(&month) {
            return Err(NameError::BadIqn);
        }
        let domain = rest[8..].split(':').next().unwrap_or("");
        if domain.is_empty() || domain.starts_with('.') || domain.ends_with('.') {
            return Err(NameError::BadIqn);
        }
        Ok(())
    } else if let Some(rest) = name.strip_prefix("eui.") {
        if rest.len() == 16 && hex(rest) {
            Ok(())
        } else {
            Err(NameError::BadEui)
        }
    } else if let Some(rest) = name.strip_prefix("naa.") {
        if (rest.len() == 16 || rest.len() == 32) && hex(rest) {
            Ok(())
        } else {
            Err(NameError::BadNaa)
        }
    } else {
        Err(NameError::BadPrefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc_examples() {
        validate("iqn.2001-04.com.example:storage:diskarrays-sn-a8675309").unwrap();
        validate("iqn.2001-04.com.example").unwrap();
        validate("eui.02004567A425678D").unwrap();
        validate("naa.52004567BA64678D").unwrap();
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(validate("iqn.2001-13.com.x"), Err(NameError::BadIqn));
        assert_eq!(validate("iqn.01-04.com.x"), Err(NameError::BadIqn));
        assert_eq!(validate("iqn.2001-04.Com.x"), Err(NameError::BadChar('C')));
        assert_eq!(validate("eui.123"), Err(NameError::BadEui));
        assert_eq!(validate("target0"), Err(NameError::BadPrefix));
        assert_eq!(
            validate(&format!("iqn.2001-04.com.x:{}", "a".repeat(220))),
            Err(NameError::TooLong)
        );
    }
}
