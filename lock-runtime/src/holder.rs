//! Lock tokens, and the holder label an operator reads back from them.
//!
//! A token is what a holder stores at the lock key; release and renewal compare it as a
//! whole. Without a label it is a bare version-4 UUID, as before. With one
//! ([`ClientBuilder::holder`](crate::ClientBuilder::holder)) it is one plain string:
//!
//! ```text
//! <label>;<unix milliseconds at acquisition>;<version-4 UUID>
//! order-service@host-3;1763790000123;1b4e28ba-2fa1-41d2-883f-0016d3cca427
//! ```
//!
//! The UUID keeps its 122 random bits, so two holders never share a token. Labels may not
//! contain `;` (nor anything outside a conservative printable set), so the value splits one
//! way only. Nothing else changes for the server: the value is still one string, compared
//! whole, so other libraries' tokens sit beside ours and ours stay opaque to them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest holder label, in bytes.
pub const MAX_HOLDER_LEN: usize = 64;

const SEPARATOR: char = ';';

/// Checks a holder label: 1 to [`MAX_HOLDER_LEN`] characters from `A-Z a-z 0-9 . _ - @ : / + =`.
/// The error says what is wrong, for [`LockError::InvalidOption`](crate::LockError).
pub(crate) fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(
            "the holder label is empty; use something that names the process, \
                    e.g. \"order-service@host-3\""
                .into(),
        );
    }
    if label.len() > MAX_HOLDER_LEN {
        return Err(format!(
            "the holder label is {} bytes long; at most {MAX_HOLDER_LEN} are allowed",
            label.len()
        ));
    }
    if let Some(bad) = label.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "the holder label contains {bad:?}; use only letters, digits and . _ - @ : / + = \
             (a `;` would make the stored value ambiguous)"
        ));
    }
    Ok(())
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':' | '/' | '+' | '=')
}

/// A fresh token for one acquisition: a version-4 UUID (122 random bits) from the thread's
/// CSPRNG, which `rand` seeds from the OS and reseeds; this avoids a `getrandom` system call
/// per acquire. With a (checked) label, the label and the time are put in front.
pub(crate) fn new_token(label: Option<&str>) -> String {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    let uuid = uuid.hyphenated().encode_lower(&mut buf);
    match label {
        None => uuid.to_owned(),
        Some(label) => {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            format!("{label}{SEPARATOR}{millis}{SEPARATOR}{uuid}")
        }
    }
}

/// What a stored token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub label: String,
    pub acquired_at: SystemTime,
}

/// Reads the holder label and acquisition time from a token made by [`new_token`] with a
/// label. Any other value (a bare UUID, another library's token) gives `None`.
pub(crate) fn parse(token: &str) -> Option<Holder> {
    let mut parts = token.rsplitn(3, SEPARATOR);
    let uuid = parts.next()?;
    let millis = parts.next()?;
    let label = parts.next()?;
    uuid::Uuid::try_parse(uuid).ok()?;
    if millis.is_empty() || millis.len() > 15 || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    check_label(label).ok()?;
    let millis: u64 = millis.parse().ok()?;
    Some(Holder {
        label: label.to_owned(),
        acquired_at: UNIX_EPOCH + Duration::from_millis(millis),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_tokens_are_fresh_v4_uuids() {
        let a = uuid::Uuid::parse_str(&new_token(None)).unwrap();
        let b = uuid::Uuid::parse_str(&new_token(None)).unwrap();
        assert_eq!(a.get_version_num(), 4);
        assert_ne!(a, b);
        assert_eq!(parse(&new_token(None)), None);
    }

    #[test]
    fn labelled_tokens_carry_the_label_and_time_back() {
        let before = SystemTime::now() - Duration::from_millis(1);
        let token = new_token(Some("order-service@host-3"));
        let after = SystemTime::now() + Duration::from_millis(1);
        let holder = parse(&token).expect("our own token parses");
        assert_eq!(holder.label, "order-service@host-3");
        assert!(before <= holder.acquired_at && holder.acquired_at <= after);
        let uuid = token.rsplit(';').next().unwrap();
        assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 4);
        assert_ne!(token, new_token(Some("order-service@host-3")));
    }

    #[test]
    fn labels_are_checked() {
        for good in [
            "a",
            "order-service@host-3",
            "pod/ns:x+y=z_1.2",
            &"x".repeat(64),
        ] {
            assert_eq!(check_label(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a;b",
            "a b",
            "tab\t",
            "ünï",
            "new\nline",
            &"x".repeat(65),
        ] {
            let err = check_label(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad:?}");
        }
        assert!(check_label("a;b").unwrap_err().contains("ambiguous"));
    }

    #[test]
    fn foreign_values_give_no_holder() {
        for value in [
            "",
            "plain",
            "a;b;c",
            "label;123;not-a-uuid",
            "label;12x;1b4e28ba-2fa1-41d2-883f-0016d3cca427",
            "bad label;123;1b4e28ba-2fa1-41d2-883f-0016d3cca427",
            ";123;1b4e28ba-2fa1-41d2-883f-0016d3cca427",
            "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
            // redis-py's tokens are uuid1 hex; bsm/redislock's are base64.
            "b2a0f1c6a4a211ee9d2a0242ac120002",
            "qT9dZk1w3b0tK6Fh8yV1Rw==",
        ] {
            assert_eq!(parse(value), None, "{value:?}");
        }
        let ok = parse("svc;1763790000123;1b4e28ba-2fa1-41d2-883f-0016d3cca427").unwrap();
        assert_eq!(
            ok.acquired_at,
            UNIX_EPOCH + Duration::from_millis(1_763_790_000_123)
        );
    }
}
