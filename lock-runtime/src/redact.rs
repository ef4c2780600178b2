//! Masking of secrets in Redis URLs, so URLs can go into `Debug` output, logs and errors.
//!
//! What is secret is decided by the parser redis-rs itself uses ([`redis::parse_redis_url`],
//! the `url` crate), not by splitting the string by hand: a hand-written split disagrees with
//! it on `#/?` in a password, on tabs and newlines (which `url` drops), on malformed scheme
//! separators and on percent-encoded query keys, and every disagreement is a leak.
//!
//! - A URL that redis-rs accepts, with no `@` outside its userinfo, is shown as `url`
//!   re-serializes it, with the user name, the password and the values of password-like query
//!   parameters replaced by `***`.
//! - Any other URL (unparsable, rejected by redis-rs, or with an `@` where `url` saw no
//!   userinfo, as in `redis://user:1234#abcd@host`) is ambiguous: what its author meant as
//!   userinfo may not be what `url` found. Everything before its last `@` is hidden, except a
//!   known scheme, and so are password-like query values.
//!
//! [`scrub`] masks the same secrets in free text (such as redis-rs's error messages) in every
//! form they may be printed: as given, percent-decoded, percent-encoded as `url` writes them,
//! `Debug`-escaped, and with the tabs and newlines that `url` ignores. A secret the parser
//! found is masked however short; a guess from an ambiguous URL only from 3 bytes, so that a
//! one-letter "user name" does not mask every such letter in the message.
//!
//! # Fuzzing
//!
//! A property test (`redact::fuzz`) checks 1,000,000 random URLs in every `cargo test`, half
//! of them well-formed and half malformed: no secret, in any form, may show in
//! `redact_url`'s output or in what `scrub` leaves of redis-rs's own error, of the URL's
//! `Display` and `Debug`, of `url::Url`'s and redis-rs's `ConnectionInfo`'s `Debug`. For a
//! long run, set the number of cases; the seed of a run is printed, and a failing case can be
//! replayed alone:
//!
//! ```text
//! REDACT_FUZZ_CASES=10000000 cargo test --release -p lock-runtime redact -- --nocapture
//! REDACT_FUZZ_SEED=<seed> REDACT_FUZZ_FIRST=<case> REDACT_FUZZ_CASES=1 cargo test -p lock-runtime redact::fuzz
//! ```
//!
//! Ten million cases took 214 s in release on two busy shared cores (about 47,000 URLs/s;
//! about 90,000/s when the machine was quieter). The default million takes about 50 s of CPU
//! in a debug build, nearly half of it in redis-rs's and `url`'s own (unoptimized) parsing.

use std::borrow::Cow;

use percent_encoding::percent_decode;
use redis::IntoConnectionInfo;
use url::{Position, Url};

/// What replaces a secret.
const MASK: &str = "***";

/// The schemes redis-rs accepts; only these are shown when a URL is ambiguous, since any
/// other "scheme" may be a user name (`alice:s3cret@host` parses with scheme `alice`).
const REDIS_SCHEMES: [&str; 7] = [
    "redis",
    "rediss",
    "valkey",
    "valkeys",
    "redis+unix",
    "valkey+unix",
    "unix",
];

/// Guessed secrets shorter than this are not masked in free text: they would mask ordinary
/// letters all over a message, and a guess is only needed where the parser found nothing.
const MIN_GUESS_LEN: usize = 3;

/// `url` with its user name, password and password-like query values masked: the form in
/// which the library prints URLs (in errors, `Debug` and logs), for services that print the
/// URLs they were configured with. The URL is read as redis-rs reads it, so what it takes
/// as the password is what is masked; a URL it cannot parse shows no user information.
///
/// ```
/// let shown = lock_runtime::redact_url("redis://app:s3cret@cache.internal:6379/0");
/// assert!(!shown.contains("s3cret"));
/// assert!(shown.contains("cache.internal:6379"));
/// ```
pub fn redact_url(url: &str) -> String {
    Redacted::new(url).shown
}

/// `message` (a parser's error, a log line) with the secrets of `url` masked, wherever and
/// in whatever form they appear.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    Redacted::new(url).scrub(message)
}

/// A URL's redacted form and the secrets that were taken out of it.
pub(crate) struct Redacted {
    /// The URL as it may be shown.
    shown: String,
    /// Forms of the whole URL that a message may quote, longest first.
    quotes: Vec<String>,
    /// The secrets, as the bytes redis-rs would send (percent-decoded), and guesses.
    secrets: Vec<Vec<u8>>,
    /// Whether the parser's reading was trusted and the URL shown as it re-serializes it.
    #[cfg_attr(not(test), allow(dead_code))]
    exact: bool,
}

impl Redacted {
    /// Finds the secrets of `url` with the parser redis-rs uses.
    pub(crate) fn new(url: &str) -> Redacted {
        let mut secrets = Secrets::default();
        let parsed = redis::parse_redis_url(url);
        let mut accepted = false;
        if let Some(parsed) = &parsed {
            secrets.parsed(parsed);
            if let Ok(info) = parsed.clone().into_connection_info() {
                // What redis-rs will actually send in AUTH.
                let settings = info.redis_settings();
                secrets.exact(settings.username().unwrap_or_default().as_bytes());
                secrets.exact(settings.password().unwrap_or_default().as_bytes());
                accepted = true;
            }
        }
        // Not a redis URL, but `url` may still see userinfo in it.
        let other = parsed.is_none().then(|| Url::parse(url).ok()).flatten();
        if let Some(other) = &other {
            secrets.parsed(other);
        }
        let exact = parsed
            .as_ref()
            .filter(|p| accepted && !p[Position::BeforeHost..].contains('@'))
            .and_then(|p| structural(p.clone()));
        let exact_shown = exact.is_some();
        let cleaned = clean(url).into_owned();
        let shown = exact.unwrap_or_else(|| conservative(&cleaned, &mut secrets));

        let mut quotes = vec![url.to_owned(), cleaned];
        let debug = format!("{url:?}");
        quotes.push(debug[1..debug.len() - 1].to_owned());
        if let Some(parsed) = parsed.or(other) {
            quotes.push(parsed.into());
        }
        quotes.retain(|q| !q.is_empty());
        quotes.sort_by_key(|q| std::cmp::Reverse(q.len()));
        quotes.dedup();

        let mut secrets = secrets.0;
        secrets.sort_unstable();
        secrets.dedup();
        Redacted {
            shown,
            quotes,
            secrets,
            exact: exact_shown,
        }
    }

    /// `message` with every quote of the URL replaced by its redacted form, and every secret
    /// masked.
    pub(crate) fn scrub(&self, message: &str) -> String {
        let mut text = message.to_owned();
        for quote in &self.quotes {
            if text.contains(quote.as_str()) {
                text = text.replace(quote.as_str(), &self.shown);
            }
        }
        let mut spans = find_spans(&text, &self.secrets);
        if spans.is_empty() {
            return text;
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for (start, end) in spans {
            if start >= copied {
                out.push_str(&text[copied..start]);
                out.push_str(MASK);
            }
            copied = copied.max(end);
        }
        out.push_str(&text[copied..]);
        out
    }
}

/// Secrets collected while reading a URL, as decoded bytes.
#[derive(Default)]
struct Secrets(Vec<Vec<u8>>);

impl Secrets {
    /// A secret the parser found: masked however short.
    fn exact(&mut self, secret: &[u8]) {
        if !secret.is_empty() {
            self.0.push(secret.to_vec());
        }
    }

    /// A stretch of text that may have been meant as a secret, as written in the URL: masked
    /// as written and percent-decoded.
    fn guess(&mut self, text: &str) {
        let text = text.trim_start_matches('/');
        if text.len() >= MIN_GUESS_LEN {
            self.0.push(text.as_bytes().to_vec());
            if text.contains('%') {
                let decoded: Cow<[u8]> = percent_decode(text.as_bytes()).into();
                if decoded.len() >= MIN_GUESS_LEN && *decoded != *text.as_bytes() {
                    self.0.push(decoded.into_owned());
                }
            }
        }
    }

    /// Decoded bytes that may have been meant as a secret.
    fn guess_bytes(&mut self, bytes: &[u8]) {
        if bytes.len() >= MIN_GUESS_LEN {
            self.0.push(bytes.to_vec());
        }
    }

    /// The user name, password and password-like query values of a parsed URL.
    fn parsed(&mut self, url: &Url) {
        self.exact(&Cow::from(percent_decode(url.username().as_bytes())));
        if let Some(password) = url.password() {
            self.exact(&Cow::from(percent_decode(password.as_bytes())));
        }
        // Pair by pair rather than with `query_pairs`, which replaces bytes that are not
        // UTF-8 (`%E4`) and so would lose the form the value is written in.
        for (key, value) in url
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|p| p.split_once('='))
        {
            if is_secret_key(&decode_key(key)) {
                self.exact(value.as_bytes());
                self.exact(&form_decode(value));
            }
        }
    }
}

/// Whether a query parameter (its decoded key) may carry a credential. redis-rs reads `user`
/// and `pass` (for unix sockets); the rest are what people write when they guess.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "secret", "token"].iter().any(|k| key.contains(k))
        || ["user", "username", "auth"].contains(&key.as_str())
}

/// The URL as `url` re-serializes it, with the secrets masked; `None` if they cannot be.
fn structural(mut url: Url) -> Option<String> {
    if !url.username().is_empty() {
        url.set_username(MASK).ok()?;
    }
    if url.password().is_some() {
        url.set_password(Some(MASK)).ok()?;
    }
    if let Some(query) = url.query() {
        let masked = mask_query(query);
        if masked != query {
            url.set_query(Some(&masked));
        }
    }
    Some(url.into())
}

/// A query string with the values of password-like parameters masked.
fn mask_query(query: &str) -> String {
    let pairs: Vec<Cow<str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_key(&decode_key(key)) => format!("{key}={MASK}").into(),
            _ => pair.into(),
        })
        .collect();
    pairs.join("&")
}

/// A query key decoded as redis-rs reads it (`application/x-www-form-urlencoded`).
fn decode_key(key: &str) -> Cow<'_, str> {
    if !key.contains(['%', '+']) {
        return key.into();
    }
    url::form_urlencoded::parse(key.as_bytes())
        .next()
        .map_or(Cow::Borrowed(""), |(k, _)| k.into_owned().into())
}

/// `url` as the `url` crate reads it: no tabs or newlines anywhere, no leading or trailing
/// control characters or spaces.
fn clean(url: &str) -> Cow<'_, str> {
    // Index loops rather than iterator chains: this runs on every URL the fuzz test makes,
    // in debug builds.
    let bytes = url.as_bytes();
    let (mut start, mut end) = (0, bytes.len());
    while start < end && bytes[start] <= b' ' {
        start += 1;
    }
    while end > start && bytes[end - 1] <= b' ' {
        end -= 1;
    }
    let trimmed = &url[start..end];
    let is_noise = |b: u8| b == b'\t' || b == b'\r' || b == b'\n';
    if !trimmed.as_bytes().iter().any(|&b| is_noise(b)) {
        return trimmed.into();
    }
    let mut kept = String::with_capacity(trimmed.len());
    for piece in trimmed.split(['\t', '\r', '\n']) {
        kept.push_str(piece);
    }
    kept.into()
}

/// Redaction that does not trust any parse: hides everything before the last `@` (except a
/// known scheme) and every password-like query value, and records what it hid as guesses.
/// `text` is the URL as [`clean`] leaves it.
fn conservative(text: &str, secrets: &mut Secrets) -> String {
    let mut hidden: Vec<(usize, usize)> = Vec::new();

    let scheme_end = text
        .find(':')
        .filter(|&colon| {
            REDIS_SCHEMES
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&text[..colon]))
        })
        .map(|colon| {
            colon + 1 + text[colon + 1..].len() - text[colon + 1..].trim_start_matches('/').len()
        })
        .unwrap_or(0);
    if let Some(at) = text[scheme_end..].rfind('@') {
        let userinfo = &text[scheme_end..scheme_end + at];
        hidden.push((scheme_end, scheme_end + at));
        secrets.guess(userinfo);
        // Whichever `@` and `:` the author meant, each reading's user and password.
        for (end, _) in userinfo.match_indices('@').chain([(userinfo.len(), "")]) {
            let info = &userinfo[..end];
            secrets.guess(info);
            for (colon, _) in info.match_indices(':') {
                for part in [&info[..colon], &info[colon + 1..]] {
                    secrets.guess(part);
                    secrets.guess(part.rsplit('/').next().unwrap_or(part));
                }
            }
        }
    }

    // `key=value` after any `?`, `&` or `;`, wherever it is.
    for (sep, _) in text.match_indices(['?', '&', ';']) {
        let rest = &text[sep + 1..];
        let Some(eq) = rest.find(['=', '&', '?', ';', '#']) else {
            continue;
        };
        if !rest[eq..].starts_with('=') || !is_secret_key(&decode_key(&rest[..eq])) {
            continue;
        }
        let start = sep + 1 + eq + 1;
        let end = text[start..]
            .find(['&', '#'])
            .map_or(text.len(), |e| start + e);
        if end > start {
            hidden.push((start, end));
            let value = &text[start..end];
            secrets.guess(value);
            secrets.guess_bytes(&form_decode(value));
        }
    }

    hidden.sort_unstable();
    let mut shown = String::with_capacity(text.len());
    let mut pos = 0;
    for (start, end) in hidden {
        if end <= pos {
            continue;
        }
        if start > pos {
            shown.push_str(&text[pos..start]);
            shown.push_str(MASK);
        } else if pos == 0 || !shown.ends_with(MASK) {
            shown.push_str(MASK);
        }
        pos = end;
    }
    shown.push_str(&text[pos..]);
    shown
}

/// A query value decoded as redis-rs reads it (`+` is a space), as bytes.
fn form_decode(value: &str) -> Vec<u8> {
    percent_decode(value.replace('+', " ").as_bytes()).collect()
}

/// The byte ranges of `text` that read as one of `secrets` (they may overlap).
fn find_spans(text: &str, secrets: &[Vec<u8>]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    if secrets.is_empty() {
        return spans;
    }
    // Bytes a match can start with: a secret's first byte, or an escape for it. Checking
    // this first, in one pass for all secrets, keeps the search cheap where nothing matches.
    let mut starts = [false; 256];
    for b in [b'%', b'\\'] {
        starts[usize::from(b)] = true;
    }
    for secret in secrets {
        starts[usize::from(secret[0])] = true;
        if secret[0] == b' ' {
            starts[usize::from(b'+')] = true;
        }
    }
    let hay = text.as_bytes();
    for (start, &b) in hay.iter().enumerate() {
        if !starts[usize::from(b)] || !text.is_char_boundary(start) {
            continue;
        }
        for secret in secrets {
            if let Some(end) = match_at(hay, start, secret, &mut 0)
                && end > start
            {
                spans.push((start, end));
            }
        }
    }
    spans
}

/// How far the search for one match may go before it gives up and masks anyway. It also
/// bounds the recursion, so a hostile message cannot overflow the stack.
const MATCH_BUDGET: u32 = 1024;

/// Where a stretch of `hay` starting at `i` that reads as `needle` ends, if one does.
///
/// Each byte of the needle may be written as itself, percent-encoded (`%2F`, any case), as
/// `+` for a space, or `Debug`-escaped (`\"`, `\\`, `\u{e4}`); tabs and newlines (raw or
/// escaped) may sit anywhere inside, since the `url` crate ignores them.
fn match_at(hay: &[u8], i: usize, needle: &[u8], steps: &mut u32) -> Option<usize> {
    // A match starts with the secret's first byte (or an escape of it), never with noise.
    match_from(hay, i, needle, steps, false)
}

/// [`match_at`], where tabs and newlines may be skipped once the match has `started`.
fn match_from(
    hay: &[u8],
    mut i: usize,
    needle: &[u8],
    steps: &mut u32,
    started: bool,
) -> Option<usize> {
    if needle.is_empty() {
        return is_boundary(hay, i).then_some(i);
    }
    *steps += 1;
    if *steps > MATCH_BUDGET {
        // Pathological input: mask a generous stretch rather than search on.
        let mut end = (i + 4 * needle.len()).min(hay.len());
        while !is_boundary(hay, end) {
            end += 1;
        }
        return Some(end);
    }
    let n = needle[0];
    // Raw tabs and newlines: skipped in a loop, not by recursion, however many there are.
    while started && i < hay.len() && matches!(hay[i], b'\t' | b'\r' | b'\n') && hay[i] != n {
        i += 1;
    }
    let b = *hay.get(i)?;
    let rest = &needle[1..];
    if b == n
        && let Some(end) = match_from(hay, i + 1, rest, steps, true)
    {
        return Some(end);
    }
    match b {
        b'%' => {
            if let Some(byte) = hex_byte(hay.get(i + 1..i + 3)?)
                && byte == n
            {
                return match_from(hay, i + 3, rest, steps, true);
            }
        }
        b'+' if n == b' ' => return match_from(hay, i + 1, rest, steps, true),
        b'\t' | b'\r' | b'\n' if started => return match_from(hay, i + 1, needle, steps, true),
        b'\\' => {
            let (len, decoded) = debug_escape(&hay[i..])?;
            if needle.starts_with(&decoded)
                && let Some(end) = match_from(hay, i + len, &needle[decoded.len()..], steps, true)
            {
                return Some(end);
            }
            if started && matches!(decoded[..], [b'\t' | b'\r' | b'\n']) {
                return match_from(hay, i + len, needle, steps, true);
            }
        }
        _ => {}
    }
    None
}

fn is_boundary(hay: &[u8], i: usize) -> bool {
    i >= hay.len() || (hay[i] as i8) >= -0x40
}

fn hex_byte(hex: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    Some((digit(hex[0])? * 16 + digit(hex[1])?) as u8)
}

/// The length of the `Debug` escape at the start of `s` and the bytes it stands for.
fn debug_escape(s: &[u8]) -> Option<(usize, Vec<u8>)> {
    Some(match s.get(1)? {
        b't' => (2, vec![b'\t']),
        b'r' => (2, vec![b'\r']),
        b'n' => (2, vec![b'\n']),
        b'\\' | b'"' | b'\'' => (2, vec![s[1]]),
        b'0' => (2, vec![0]),
        b'u' if s.get(2) == Some(&b'{') => {
            let close = s.iter().position(|&b| b == b'}')?;
            let hex = std::str::from_utf8(&s[3..close]).ok()?;
            let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
            let mut buf = [0; 4];
            (close + 1, c.encode_utf8(&mut buf).as_bytes().to_vec())
        }
        _ => return None,
    })
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails if `text` shows `secret` in any of the forms it may be printed in: as given,
    /// without the tab/CR/LF the `url` crate strips, percent-decoded, or percent-encoded.
    #[track_caller]
    fn assert_hidden(text: &str, secret: &str) {
        let stripped: String = secret
            .chars()
            .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
            .collect();
        let decoded = percent_encoding::percent_decode_str(&stripped).decode_utf8_lossy();
        let encoded = url_encoded(&decoded);
        for form in [secret, &stripped, &decoded, &encoded] {
            assert!(!text.contains(form), "{form:?} shows in {text:?}");
        }
    }

    /// How the `url` crate writes `s` in userinfo: the WHATWG userinfo percent-encode set.
    fn url_encoded(s: &str) -> String {
        let mut url = url::Url::parse("redis://h").unwrap();
        url.set_password(Some(s)).unwrap();
        url.password().unwrap().to_owned()
    }

    #[test]
    fn password_with_hash_slash_or_question_mark_is_masked() {
        for (url, secrets) in [
            (
                "redis://alice:pa#ss1@cache:6379/0",
                &["alice", "pa#ss1"][..],
            ),
            ("redis://alice:pa/ss1@cache:6379/0", &["alice", "pa/ss1"]),
            ("redis://alice:pa?ss1@cache:6379/0", &["alice", "pa?ss1"]),
            ("redis://al/ice:passwd@cache:6379/0", &["al/ice", "passwd"]),
            // A password that starts like a port: `url` reads host `alice`, port 1234 and a
            // fragment, and redis-rs accepts it.
            ("redis://alice:1234#abcd@cache", &["alice", "1234#abcd"]),
            (
                "redis://alice:1234/?x=abcd@cache",
                &["alice", "1234/?x=abcd"],
            ),
        ] {
            let shown = redact_url(url);
            for secret in secrets {
                assert_hidden(&shown, secret);
            }
            assert!(
                shown.ends_with("@cache:6379/0") || shown.ends_with("@cache"),
                "{shown}"
            );
        }
    }

    #[test]
    fn malformed_scheme_separator_hides_userinfo() {
        for url in [
            "redis:/alice:s3cret@cache:6379",
            "redis:///alice:s3cret@cache:6379",
            "redis:alice:s3cret@cache:6379",
            "redis//alice:s3cret@cache:6379",
            "alice:s3cret@cache:6379/?next=redis://other",
            "REDIS:/alice:s3cret@cache:6379",
        ] {
            let shown = redact_url(url);
            assert_hidden(&shown, "s3cret");
            assert_hidden(&shown, "alice");
            assert!(shown.contains("cache:6379"), "{shown}");
        }
    }

    #[test]
    fn tab_cr_lf_in_userinfo_are_masked_as_the_url_crate_reads_them() {
        // The `url` crate drops tabs and newlines anywhere, so redis-rs authenticates as
        // `alice` with `s3cret`.
        let url = "redis://al\tice:s3\r\ncr\tet@cache:6379/0";
        let shown = redact_url(url);
        assert_hidden(&shown, "s3\r\ncr\tet");
        assert_hidden(&shown, "al\tice");
        assert!(!shown.contains(['\t', '\r', '\n']), "{shown:?}");
        let message = format!("cannot use {url} (password s3cret, user alice)");
        let scrubbed = scrub(&message, url);
        assert_hidden(&scrubbed, "s3\r\ncr\tet");
        assert_hidden(&scrubbed, "al\tice");
        let debug = scrub(&format!("{url:?}"), url);
        assert!(!debug.contains(r"s3\r\ncr\tet"), "{debug}");
        assert_hidden(&debug, "s3\r\ncr\tet");
    }

    #[test]
    fn query_password_is_masked_in_any_case_or_encoding() {
        for url in [
            "redis://cache/?password=s3cret",
            "redis://cache/?PASSWORD=s3cret",
            "redis://cache/?Pass=s3cret",
            "redis://cache/?%70ass=s3cret",
            "redis://cache/?pa%73sword=s3cret&protocol=resp3",
            "redis://cache/?pass=s3%63ret",
            "redis://cache/?x=1&pa\tss=s3cret",
            "unix:///run/redis.sock?db=1&pass=s3cret",
        ] {
            let shown = redact_url(url);
            assert_hidden(&shown, "s3cret");
            assert_hidden(&shown, "s3%63ret");
        }
        // redis-rs reads the user of a unix socket URL from the query.
        let shown = redact_url("unix:///run/redis.sock?user=alice&pass=s3cret");
        assert_hidden(&shown, "alice");
        assert!(shown.starts_with("unix:///run/redis.sock?"), "{shown}");
    }

    #[test]
    fn scrub_masks_the_userinfo_not_up_to_the_last_at() {
        let url = "redis://alice:s3cret@cache:6379/?client=app@host";
        let scrubbed = scrub("AUTH failed for alice:s3cret (password s3cret)", url);
        assert_hidden(&scrubbed, "s3cret");
        assert_hidden(&scrubbed, "alice");
    }

    #[test]
    fn scrub_masks_the_percent_encoded_form_the_url_crate_writes() {
        let url = "redis://al ice:p\u{e4}ss w\"rd@cache:6379/0";
        let serialized = url::Url::parse(url).unwrap().to_string();
        assert!(serialized.contains("p%C3%A4ss%20w%22rd"), "{serialized}");
        let scrubbed = scrub(&format!("cannot connect to {serialized}"), url);
        assert_hidden(&scrubbed, "p\u{e4}ss w\"rd");
        assert_hidden(&scrubbed, "al ice");
        let scrubbed = scrub(&format!("{:?}", url::Url::parse(url).unwrap()), url);
        assert_hidden(&scrubbed, "p\u{e4}ss w\"rd");
        assert_hidden(&scrubbed, "al ice");
    }

    #[test]
    fn scrub_masks_the_username_in_redis_connection_info() {
        // redis-rs's own Debug hides the password but prints the user name.
        let url = "redis://alice.admin:s3cret@cache:6379/0";
        let info = redis::Client::open(url)
            .unwrap()
            .get_connection_info()
            .clone();
        let scrubbed = scrub(&format!("{info:?}"), url);
        assert_hidden(&scrubbed, "alice.admin");
        assert!(scrubbed.contains("cache"), "{scrubbed}");
    }

    #[test]
    fn unparsable_url_shows_no_userinfo() {
        for url in [
            "redis://alice:s3cret@[::1",
            "redis://alice:s3cret@cache:99999",
            "redis://alice:s3cret@ca che",
            "http://alice:s3cret@cache",
            "redis:// alice:s3cret@cache",
        ] {
            let shown = redact_url(url);
            assert_hidden(&shown, "s3cret");
            assert_hidden(&shown, "alice");
            let err = redis::Client::open(url).err().map(|e| e.to_string());
            let scrubbed = scrub(&format!("{err:?} for {url}"), url);
            assert_hidden(&scrubbed, "s3cret");
            assert_hidden(&scrubbed, "alice");
        }
    }

    #[test]
    fn scrub_stays_fast_and_safe_on_hostile_messages() {
        let url = "redis://alice:s3cret@cache:6379/0";
        for message in [
            format!("s{}3cret", "\t".repeat(200_000)),
            format!("s{}", "\\t".repeat(100_000)),
            "%25".repeat(100_000),
            "s".repeat(100_000),
        ] {
            let scrubbed = scrub(&message, url);
            assert_hidden(&scrubbed, "s3cret");
        }
    }

    #[test]
    fn urls_without_secrets_are_shown_unchanged() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "redis://cache/?protocol=resp3",
            "rediss://cache.internal:6380/#insecure",
            "unix:///run/redis.sock?db=2",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn user_password_and_query_secrets_are_masked() {
        assert_eq!(
            redact_url("redis://user:s3cret@host:6380/0"),
            "redis://***:***@host:6380/0"
        );
        assert_eq!(redact_url("redis://:s3cret@host/"), "redis://:***@host/");
        // redis-rs reads a lone `secret@` as the user name; masked all the same.
        assert_eq!(redact_url("redis://s3cret@host"), "redis://***@host");
        assert_eq!(
            redact_url("redis://host/?password=s3cret&protocol=resp3"),
            "redis://host/?password=***&protocol=resp3"
        );
        assert_eq!(redact_url("redis://127.0.0.1:1/"), "redis://127.0.0.1:1/");
        assert_eq!(redact_url("not a url p@ss"), "***@ss");
        // Whether redis-rs accepts `rediss://` depends on its TLS features, which cargo
        // unifies across the build (a workspace build may turn them on): the exact form or
        // the conservative one, never the secret.
        let tls = redact_url("rediss://a:p%40ss@h:1");
        assert!(
            tls == "rediss://***@h:1" || tls == "rediss://***:***@h:1",
            "{tls}"
        );
        assert_eq!(redact_url("redis://a:p%40ss@h:1"), "redis://***:***@h:1");
    }
}
