//! Property test: no generated URL's secret shows in what we print.
//!
//! Each case builds a URL from parts, remembering which parts are secret: the user name and
//! password it put in userinfo position, and the values it gave password-like query keys.
//! Those are what the author meant, whatever a parser makes of them. On top, redis-rs's own
//! reading (the user name and password in its `ConnectionInfo`) is checked too.
//!
//! A secret counts only when it is non-trivial: at least 4 characters once tabs and newlines
//! are dropped and percent-escapes decoded, and not inside any public part of the same URL
//! (or the fixed text of redis-rs's messages and `Debug` output), since showing public parts
//! is the point of redaction. Masks are `***` and secrets never contain `*`, so a secret can
//! only show in one stretch of public text, which is what the second rule rules out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::Redacted;

/// Cases in a normal `cargo test`; `REDACT_FUZZ_CASES` overrides it.
const DEFAULT_CASES: u64 = 1_000_000;

/// SplitMix64: small, fast in debug builds, and reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

/// Scheme separators, well-formed and not.
const PREFIXES: &[&str] = &[
    "redis://",
    "redis://",
    "redis://",
    "rediss://",
    "valkey://",
    "REDIS://",
    "Redis://",
    "unix://",
    "redis+unix://",
    "redis:/",
    "redis:///",
    "redis:",
    "redis//",
    "//",
    "",
    "http://",
    "redis:\t//",
    "re\ndis://",
    " redis://",
    "redis:\\\\",
];

const HOSTS: &[&str] = &[
    "cache",
    "cache.internal",
    "127.0.0.1",
    "10.1.2.3",
    "[::1]",
    "h",
    "",
    "0.0.0.0",
    "ca che",
    "[::1",
    "xn--caf-dma",
];

const PORTS: &[&str] = &["", "", ":6379", ":6380", ":1", ":99999", ":abc", ":"];

const PATHS: &[&str] = &["", "", "/", "/0", "/3", "/x", "/run/redis.sock", "/a@b"];

/// Query keys whose value is a credential (to the author, and for some to redis-rs).
const SECRET_KEYS: &[&str] = &[
    "password",
    "pass",
    "PASS",
    "Password",
    "%70ass",
    "pa%73sword",
    "PA%53S",
    "pa\tss",
    "user",
    "username",
    "USER",
    "%75ser",
];

const PUBLIC_KEYS: &[&str] = &["protocol", "db", "x", "next", "client"];

const PUBLIC_VALUES: &[&str] = &["resp3", "2", "1", "abc", "a@b", "redis://z", ""];

const FRAGMENTS: &[&str] = &["", "", "", "#insecure", "#x", "#a@b"];

/// Pieces of secrets: plain runs and everything that has broken a splitter before.
const SECRET_PIECES: &[&str] = &[
    "#", "/", "?", "@", ":", "%", "\t", "\r", "\n", " ", "\"", "\\", "'", "+", "=", "&", ";", "[",
    "]", "<", ">", "{", "}", "|", "^", "`", "~", "!", "$", ",", "é", "中", "🔑", "\u{200b}",
    "e\u{301}", "%23", "%40", "%2F", "%2f", "%3A", "%25", "%20", "%zz", "%4", "%E4", "%C3%A4",
    "//", "://", "redis://", "?pass=", "#x@", "\u{7f}", "\u{1}",
];

/// Text that shows up around URLs whatever their secrets are: redis-rs's error messages and
/// the field names of the `Debug` output we scrub, and the schemes that are shown even when a
/// URL is ambiguous (a user name `redis://` looks like one). A secret inside it is trivial.
const FIXED_TEXT: &str = "Redis URL did not parse - InvalidClientConfig: Missing hostname \
    Invalid database number Invalid protocol version Username is not valid UTF-8 string \
    Password is not valid UTF-8 string can't connect with TLS, the feature is not enabled \
    Cannot connect to a wildcard address (0.0.0.0 or ::) only #insecure is supported as URL \
    fragment URL provided is not a redis URL Missing path \
    Url { scheme: \"\", cannot_be_a_base: false, true, username: \"\", password: None, \
    Some(\"\"), host: Some(Domain(\"\")), Ipv4( Ipv6( port: Some(), path: \"\", query: \
    fragment: } ConnectionInfo { addr: Tcp(\"\", ), TcpTls { host: port: insecure: \
    tls_params: Unix(\"\") tcp_settings: TcpSettings { nodelay: false, keepalive: None, \
    linger_time: None, user_timeout: None }, redis: RedisConnectionInfo { db: 0, username: \
    password: Some(\"<redacted>\"), protocol: RESP2, RESP3, skip_set_lib_name: false, \
    lib_name: None, lib_ver: None } } \
    redis:// rediss:// valkey:// valkeys:// unix:// redis+unix:// valkey+unix://";

/// The schemes redis-rs knows, longest first so `redis+unix` is not read as `redis`.
const SCHEMES: &[&str] = &[
    "valkey+unix:",
    "redis+unix:",
    "valkeys:",
    "valkey:",
    "rediss:",
    "redis:",
    "unix:",
];

/// A generated URL and what its author meant as secret.
struct Case {
    url: String,
    /// Secrets as written into the URL.
    secrets: Vec<String>,
    /// The URL's public parts, in order; a secret sits between two of them.
    public: Vec<String>,
}

/// Half the cases are tidy: a well-formed URL that redis-rs accepts, so the exact path is
/// tested as hard as the conservative one. Their secrets may still hold anything that does
/// not end userinfo (`%`, tabs, unicode, `:` in a password).
const TIDY_PREFIXES: &[&str] = &[
    "redis://",
    "redis://",
    "valkey://",
    "REDIS://",
    "redis:\t//",
];
const TIDY_HOSTS: &[&str] = &[
    "cache",
    "cache.internal",
    "127.0.0.1",
    "10.1.2.3",
    "[::1]",
    "h",
];
const TIDY_PORTS: &[&str] = &["", ":6379", ":6380"];
const TIDY_PATHS: &[&str] = &["", "/", "/0", "/3"];
const TIDY_VALUES: &[&str] = &["resp3", "2", "1", "abc", ""];
const TIDY_FRAGMENTS: &[&str] = &["", "", "#x"];

fn secret(rng: &mut Rng, tidy: bool) -> String {
    let mut s = String::new();
    for _ in 0..1 + rng.below(6) {
        if rng.chance(45) {
            // A run of letters and digits, so most secrets are not made of punctuation only.
            for _ in 0..1 + rng.below(5) {
                let c = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
                    [rng.below(59)] as char;
                s.push(c);
            }
        } else {
            let mut piece = rng.pick(SECRET_PIECES);
            while tidy && piece.contains(['#', '/', '?', '@']) {
                piece = rng.pick(SECRET_PIECES);
            }
            s.push_str(piece);
        }
    }
    s
}

/// Ends the public part before a secret and adds the secret. An empty secret is no secret
/// and does not split the public text: what is on both sides of it shows side by side. Nor
/// does one of only tabs and newlines, which a reader (and `url`) drops: it stays in the
/// public text, or a secret that the two sides spell out together would count as a leak
/// (seen once in 15M cases: user `?pass=#`, then a query `?pa<TAB>ss=<CR>#x`).
fn push_secret(
    url: &mut String,
    public: &mut Vec<String>,
    current: &mut String,
    secrets: &mut Vec<String>,
    secret: String,
) {
    if secret.is_empty() {
        return;
    }
    if normalize(&secret, false).is_empty() {
        current.push_str(&secret);
        return;
    }
    url.push_str(current);
    public.push(std::mem::take(current));
    url.push_str(&secret);
    secrets.push(secret);
}

fn generate(rng: &mut Rng) -> Case {
    let mut url = String::new();
    let mut secrets = Vec::new();
    let mut public = Vec::new();
    let mut current = String::new();

    let tidy = rng.chance(50);
    let pick = |rng: &mut Rng, tidy_list, list| rng.pick(if tidy { tidy_list } else { list });
    current.push_str(pick(rng, TIDY_PREFIXES, PREFIXES));
    if rng.chance(85) {
        let user = if rng.chance(75) {
            secret(rng, tidy)
        } else {
            String::new()
        };
        let password = rng.chance(85).then(|| secret(rng, tidy));
        for (i, part) in [Some(user), password].into_iter().enumerate() {
            let Some(part) = part else { continue };
            if i == 1 {
                current.push(':');
            }
            push_secret(&mut url, &mut public, &mut current, &mut secrets, part);
        }
        current.push('@');
    }
    current.push_str(pick(rng, TIDY_HOSTS, HOSTS));
    current.push_str(pick(rng, TIDY_PORTS, PORTS));
    current.push_str(pick(rng, TIDY_PATHS, PATHS));
    if rng.chance(50) {
        for i in 0..1 + rng.below(3) {
            current.push(if i == 0 { '?' } else { '&' });
            if rng.chance(50) {
                current.push_str(rng.pick(SECRET_KEYS));
                current.push('=');
                // `&` and `#` would end the value, so they are not part of it.
                let value: String = secret(rng, tidy).replace(['&', '#'], "");
                push_secret(&mut url, &mut public, &mut current, &mut secrets, value);
            } else {
                current.push_str(rng.pick(PUBLIC_KEYS));
                current.push('=');
                current.push_str(pick(rng, TIDY_VALUES, PUBLIC_VALUES));
            }
        }
    }
    current.push_str(pick(rng, TIDY_FRAGMENTS, FRAGMENTS));
    if rng.chance(3) {
        current.push_str("\t ");
    }
    url.push_str(&current);
    public.push(current);
    Case {
        url,
        secrets,
        public,
    }
}

/// A secret or text as a reader would see it: no tabs or newlines, percent-escapes decoded,
/// and for `Debug` output (`unescape`) the escapes undone. A leak is the normalized secret
/// inside the normalized text; that covers the secret as written, as `url` re-encodes it,
/// decoded, `Debug`-escaped, and with tabs or newlines inside.
fn normalize(s: &str, unescape: bool) -> String {
    let s = s.as_bytes();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        i += 1;
        match b {
            b'\t' | b'\r' | b'\n' => {}
            b'\\' if unescape && i < s.len() => {
                let e = s[i];
                i += 1;
                match e {
                    b't' | b'r' | b'n' => {}
                    b'0' => out.push(0),
                    b'u' if s.get(i) == Some(&b'{') => {
                        let close = i + s[i..].iter().position(|&b| b == b'}').unwrap_or(0);
                        let c = std::str::from_utf8(&s[i + 1..close])
                            .ok()
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .and_then(char::from_u32)
                            .unwrap_or('?');
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        i = close + 1;
                    }
                    other => out.push(other),
                }
            }
            _ => out.push(b),
        }
    }
    // Percent-decoding in place, as `percent_encoding::percent_decode` does it.
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let (mut read, mut write) = (0, 0);
    while read < out.len() {
        let mut b = out[read];
        read += 1;
        if b == b'%'
            && let (Some(h), Some(l)) = (hex(out.get(read)), hex(out.get(read + 1)))
        {
            b = (h * 16 + l) as u8;
            read += 2;
        }
        out[write] = b;
        write += 1;
    }
    out.truncate(write);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`FIXED_TEXT`], normalized, with an index of its 4-byte windows: most secrets share none
/// with it, and looking that up is much cheaper in a debug build than searching the text.
struct Fixed {
    text: String,
    windows: std::collections::HashSet<[u8; 4]>,
}

impl Fixed {
    fn new() -> Fixed {
        let text = normalize(FIXED_TEXT, false);
        let windows = text
            .as_bytes()
            .windows(4)
            .map(|w| [w[0], w[1], w[2], w[3]])
            .collect();
        Fixed { text, windows }
    }

    fn contains(&self, s: &str) -> bool {
        match s.as_bytes() {
            [a, b, c, d, ..] => self.windows.contains(&[*a, *b, *c, *d]) && self.text.contains(s),
            _ => self.text.contains(s),
        }
    }
}

struct Counts {
    cases: AtomicU64,
    with_secret: AtomicU64,
    accepted: AtomicU64,
    structural: AtomicU64,
    quoted: AtomicU64,
}

/// Checks one case; returns a description of the leak, if any.
fn check(case: &Case, variant: u64, fixed: &Fixed, counts: &Counts) -> Option<String> {
    let url = case.url.as_str();
    let mut secrets = case.secrets.clone();
    let (info, error) = match redis::Client::open(url) {
        Ok(client) => (Some(client.get_connection_info().clone()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    if let Some(info) = &info {
        counts.accepted.fetch_add(1, Ordering::Relaxed);
        let settings = info.redis_settings();
        secrets.extend(settings.username().map(str::to_owned));
        secrets.extend(settings.password().map(str::to_owned));
    }

    // Compared without case: `url` lowercases the scheme (`REDIS://` shows as `redis://`).
    let public_norm: Vec<String> = case
        .public
        .iter()
        .map(|p| normalize(p, false).to_ascii_lowercase())
        .collect();
    let secrets: Vec<String> = secrets
        .iter()
        .filter_map(|s| {
            let n = normalize(s, false);
            // A known scheme, `:` and `/` at the start read as the scheme (`redis:` + `//x`),
            // which is shown.
            let lower = n.to_ascii_lowercase();
            let after_scheme = SCHEMES
                .iter()
                .find_map(|s| lower.strip_prefix(s))
                .unwrap_or(&lower);
            let trivial = after_scheme.trim_start_matches([':', '/']).chars().count() < 4
                || fixed.contains(&n)
                || public_norm.iter().any(|p| p.contains(lower.as_str()));
            (!trivial).then_some(n)
        })
        .collect();
    if secrets.is_empty() {
        return None;
    }
    counts.with_secret.fetch_add(1, Ordering::Relaxed);

    let redacted = Redacted::new(url);
    if redacted.exact {
        counts.structural.fetch_add(1, Ordering::Relaxed);
    }
    // What we scrub: redis-rs's error, if it rejects the URL, and one more text in turn.
    // (what, is it Debug output, text)
    let mut inputs = Vec::with_capacity(2);
    inputs.extend(error.map(|e| ("redis-rs error", false, e)));
    match (variant % 4, &info) {
        (0, _) => inputs.push(("Display of the URL", false, url.to_owned())),
        (1, _) => inputs.push(("Debug of the URL", true, format!("{url:?}"))),
        (2, _) => match url::Url::parse(url) {
            Ok(u) => inputs.push(("url::Url Debug", true, format!("{u:?}"))),
            Err(_) => inputs.push(("Debug of the URL", true, format!("{url:?}"))),
        },
        (_, Some(info)) => {
            inputs.push(("ConnectionInfo Debug", true, format!("{info:?}")));
            let s = info.redis_settings();
            let (user, password) = (s.username(), s.password());
            let auth = format!(
                "AUTH {} {}",
                user.unwrap_or_default(),
                password.unwrap_or_default()
            );
            inputs.push(("AUTH message", false, auth));
        }
        (_, None) => inputs.push(("Display of the URL", false, url.to_owned())),
    }
    let mut outputs = vec![("redact_url", false, redacted.shown.clone())];
    let mut quoted = false;
    for (what, debug, input) in inputs {
        if !what.ends_with("of the URL") {
            let norm = normalize(&input, debug);
            quoted |= secrets.iter().any(|n| norm.contains(n.as_str()));
        }
        outputs.push((what, debug, redacted.scrub(&input)));
    }
    if quoted {
        counts.quoted.fetch_add(1, Ordering::Relaxed);
    }
    for (what, debug, text) in &outputs {
        let norm = normalize(text, *debug);
        if let Some(n) = secrets.iter().find(|n| norm.contains(n.as_str())) {
            return Some(format!(
                "secret {n:?} of {url:?} shows in the {what}: {text:?}"
            ));
        }
    }
    None
}

#[test]
fn no_secret_of_a_random_url_is_ever_shown() {
    let cases: u64 = std::env::var("REDACT_FUZZ_CASES")
        .ok()
        .map(|v| v.parse().expect("REDACT_FUZZ_CASES is a number"))
        .unwrap_or(DEFAULT_CASES);
    // To replay one failing case: REDACT_FUZZ_SEED=<seed> REDACT_FUZZ_FIRST=<case>
    // REDACT_FUZZ_CASES=1.
    let first: u64 = std::env::var("REDACT_FUZZ_FIRST")
        .ok()
        .map(|v| v.parse().expect("REDACT_FUZZ_FIRST is a number"))
        .unwrap_or(0);
    let seed: u64 = std::env::var("REDACT_FUZZ_SEED")
        .ok()
        .map(|v| v.parse().expect("REDACT_FUZZ_SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let counts = Counts {
        cases: AtomicU64::new(0),
        with_secret: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        structural: AtomicU64::new(0),
        quoted: AtomicU64::new(0),
    };
    let fixed = &Fixed::new();
    let started = Instant::now();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let counts = &counts;
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    // Each thread takes every `threads`-th case, each case from its own seed,
                    // so a failing case can be replayed alone.
                    let mut i = first + t;
                    while i < first + cases && failures.len() < 5 {
                        let mut rng = Rng(seed ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D));
                        let case = generate(&mut rng);
                        counts.cases.fetch_add(1, Ordering::Relaxed);
                        if let Some(leak) = check(&case, i, fixed, counts) {
                            failures.push(format!("case {i}: {leak}"));
                        }
                        i += threads;
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("fuzz thread"))
            .collect()
    });
    let elapsed = started.elapsed();
    let n = counts.cases.load(Ordering::Relaxed);
    let with_secret = counts.with_secret.load(Ordering::Relaxed);
    let accepted = counts.accepted.load(Ordering::Relaxed);
    let structural = counts.structural.load(Ordering::Relaxed);
    let quoted = counts.quoted.load(Ordering::Relaxed);
    eprintln!(
        "redact fuzz: {n} URLs (seed {seed}) in {elapsed:.1?} on {threads} threads, {:.0} \
         URLs/s; {with_secret} carried a non-trivial secret, {quoted} of them quoted in a \
         message or Debug output other than the URL itself; {accepted} accepted by redis-rs; \
         {structural} shown structurally",
        n as f64 / elapsed.as_secs_f64(),
    );
    assert!(
        failures.is_empty(),
        "REDACT_FUZZ_SEED={seed}: {}",
        failures.join("\n")
    );
    assert_eq!(n, cases);
    if cases < 10_000 {
        return; // A replay: too few cases for the proportions below.
    }
    // Not vacuous: most cases carried a secret, in every kind of text.
    assert!(with_secret * 2 > n, "{with_secret} of {n} carried a secret");
    assert!(
        quoted * 4 > with_secret,
        "{quoted} of {with_secret} were quoted"
    );
    assert!(accepted * 20 > n, "{accepted} of {n} accepted by redis-rs");
    assert!(
        structural * 10 > n,
        "{structural} of {n} shown structurally"
    );
}
