//! The key template language: `"order:{id}"`, `"tenant:<self.tenant>"`.
//!
//! This module is pure string processing. It knows nothing about the
//! function the attribute sits on; `expand` checks the placeholders against
//! the parameters afterwards. Keeping it free of spans and tokens lets the
//! unit tests below cover the grammar exhaustively.
//!
//! Grammar:
//! - `{path}` and `<path>` are placeholders, `path` being `name(.field)*`
//!   with optional whitespace around the names and dots. A field may be a
//!   tuple index (`{pair.0}`).
//! - `{{`, `}}`, `<<` and `>>` are a literal `{`, `}`, `<` and `>`.
//! - Any other `}` or `>` is an error, as is a placeholder that is empty,
//!   unclosed, or closed by the other style's bracket.

use std::fmt;
use std::ops::Range;

/// A parsed, valid key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    /// Literal text and placeholders, in order. Adjacent text is merged.
    pub segments: Vec<Segment>,
}

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Literal text, with escapes already resolved (`{{` is stored as `{`).
    Text(String),
    /// A value formatted with `Display`.
    Placeholder(Placeholder),
}

/// A `{name.field}` or `<name.field>` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placeholder {
    /// The parameter the placeholder names (`self`, `order`, `r#type`).
    pub root: String,
    /// Field accesses after the root, outermost first (`["id"]`, `["0"]`).
    pub fields: Vec<String>,
    /// Byte range of the whole placeholder, delimiters included.
    pub bytes: Range<usize>,
}

/// A problem in a template, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Byte range in the template the error is about.
    pub bytes: Range<usize>,
    /// 1-based character position of the start of `bytes`, for messages.
    pub column: usize,
}

/// The kinds of template errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The template is `""`.
    Empty,
    /// A `{` or `<` with no closing bracket.
    Unclosed { open: char },
    /// A `}` or `>` that closes nothing and is not doubled.
    Stray { close: char },
    /// `{name>` or `<name}`.
    Mismatched { open: char, close: char },
    /// `{}`, `<>` or `{ }`.
    EmptyPlaceholder { open: char, close: char },
    /// The text between the brackets is not a field path.
    InvalidPath { text: String, reason: &'static str },
    /// The text between the brackets is an expression or a format spec
    /// (`{order.id()}`, `{id:?}`): a job for `key = format!(..)`.
    NotAPath { text: String, what: &'static str },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.column;
        match &self.kind {
            ErrorKind::Empty => {
                f.write_str("the key template is empty; write a key such as \"order:{id}\"")
            }
            ErrorKind::Unclosed { open } => {
                let close = closing(*open);
                write!(
                    f,
                    "unclosed `{open}` at character {at} of the key template; \
                     close the placeholder with `{close}`, or write `{open}{open}` for a literal `{open}`",
                )
            }
            ErrorKind::Stray { close } => write!(
                f,
                "unmatched `{close}` at character {at} of the key template; \
                 write `{close}{close}` for a literal `{close}`",
            ),
            ErrorKind::Mismatched { open, close } => write!(
                f,
                "placeholder opened with `{open}` is closed with `{close}` at character {at} \
                 of the key template; close it with `{}`",
                closing(*open),
            ),
            ErrorKind::EmptyPlaceholder { open, close } => write!(
                f,
                "empty placeholder `{open}{close}` at character {at} of the key template; \
                 name a parameter, as in `{open}id{close}`",
            ),
            ErrorKind::InvalidPath { text, reason } => write!(
                f,
                "invalid placeholder `{text}` at character {at} of the key template: {reason}",
            ),
            ErrorKind::NotAPath { text, what } => write!(
                f,
                "invalid placeholder `{text}` at character {at} of the key template: \
                 placeholders name a parameter and its fields, not {what}; \
                 for anything else write the key as an expression, as in \
                 `key = format!(\"order:{{}}\", order.id())` or `key = format!(\"{{id:?}}\")`",
            ),
        }
    }
}

fn closing(open: char) -> char {
    if open == '{' { '}' } else { '>' }
}

/// Parses a key template, reporting every error found, not only the first.
pub(crate) fn parse(template: &str) -> Result<Template, Vec<TemplateError>> {
    let mut parser = Parser {
        src: template,
        segments: Vec::new(),
        errors: Vec::new(),
        counted: (0, 0),
    };
    if template.is_empty() {
        parser.error(ErrorKind::Empty, 0..0);
    } else {
        parser.run();
    }
    if parser.errors.is_empty() {
        Ok(Template {
            segments: parser.segments,
        })
    } else {
        Err(parser.errors)
    }
}

struct Parser<'a> {
    src: &'a str,
    segments: Vec<Segment>,
    errors: Vec<TemplateError>,
    /// `(byte offset, characters before it)` of the last error: errors come
    /// in order, so columns are counted on from there, not from the start.
    counted: (usize, usize),
}

impl Parser<'_> {
    fn run(&mut self) {
        let src = self.src;
        let mut pos = 0;
        while let Some(c) = src[pos..].chars().next() {
            let next = src[pos + c.len_utf8()..].chars().next();
            match c {
                '{' | '<' | '}' | '>' if next == Some(c) => {
                    self.text(c);
                    pos += 2;
                }
                '{' | '<' => pos = self.placeholder(pos, c),
                '}' | '>' => {
                    self.error(ErrorKind::Stray { close: c }, pos..pos + 1);
                    pos += 1;
                }
                _ => {
                    self.text(c);
                    pos += c.len_utf8();
                }
            }
        }
    }

    fn text(&mut self, c: char) {
        if let Some(Segment::Text(text)) = self.segments.last_mut() {
            text.push(c);
        } else {
            self.segments.push(Segment::Text(c.to_string()));
        }
    }

    /// Parses the placeholder whose opening bracket is at `start`; returns
    /// where scanning resumes.
    fn placeholder(&mut self, start: usize, open: char) -> usize {
        let src = self.src;
        let close = closing(open);
        let inner_start = start + 1;
        for (offset, c) in src[inner_start..].char_indices() {
            let at = inner_start + offset;
            match c {
                _ if c == close => {
                    self.path(start, &src[inner_start..at], at + 1, open);
                    return at + 1;
                }
                '}' | '>' => {
                    self.error(ErrorKind::Mismatched { open, close: c }, at..at + 1);
                    return at + 1;
                }
                // The same opening bracket again means this one was never
                // closed; resume at the new one so its own problems (if
                // any) get reported too.
                _ if c == open => {
                    self.error(ErrorKind::Unclosed { open }, start..start + 1);
                    return at;
                }
                _ => {}
            }
        }
        self.error(ErrorKind::Unclosed { open }, start..start + 1);
        src.len()
    }

    fn path(&mut self, start: usize, inner: &str, end: usize, open: char) {
        let bytes = start..end;
        if inner.trim().is_empty() {
            let close = closing(open);
            self.error(ErrorKind::EmptyPlaceholder { open, close }, bytes);
            return;
        }
        let invalid = |reason| ErrorKind::InvalidPath {
            text: inner.trim().to_owned(),
            reason,
        };
        if let Some(what) = expression_syntax(inner) {
            self.error(
                ErrorKind::NotAPath {
                    text: inner.trim().to_owned(),
                    what,
                },
                bytes,
            );
            return;
        }
        let mut names = inner.split('.').map(str::trim);
        let root = names.next().unwrap_or_default();
        let fields: Vec<&str> = names.collect();
        let problem = if root.is_empty() || fields.iter().any(|f| f.is_empty()) {
            Some("a name is missing around a `.`")
        } else if root.bytes().all(|b| b.is_ascii_digit()) {
            Some("a placeholder must start with a parameter name, not a number")
        } else if !is_identifier(root) {
            Some("expected a parameter name, optionally followed by `.field`s")
        } else if fields
            .iter()
            .any(|f| !is_identifier(f) && !is_tuple_index(f))
        {
            Some("a field must be an identifier or a tuple index")
        } else if fields.contains(&"self") {
            Some("`self` can only start a placeholder")
        } else {
            None
        };
        match problem {
            Some(reason) => self.error(invalid(reason), bytes),
            None => self.segments.push(Segment::Placeholder(Placeholder {
                root: root.to_owned(),
                fields: fields.into_iter().map(str::to_owned).collect(),
                bytes,
            })),
        }
    }

    fn error(&mut self, kind: ErrorKind, bytes: Range<usize>) {
        let (from, before) = match self.counted {
            (at, count) if at <= bytes.start => (at, count),
            _ => (0, 0),
        };
        let before = before + self.src[from..bytes.start].chars().count();
        self.counted = (bytes.start, before);
        let column = before + 1;
        self.errors.push(TemplateError {
            kind,
            bytes,
            column,
        });
    }
}

/// What makes a placeholder an expression or a format spec rather than a
/// field path, if anything: a better message than "invalid placeholder".
fn expression_syntax(inner: &str) -> Option<&'static str> {
    if inner.contains('(') || inner.contains(')') {
        Some("a method call")
    } else if inner.contains("::") {
        Some("a path")
    } else if inner.contains(':') {
        Some("a format spec")
    } else if inner.contains('[') || inner.contains(']') {
        Some("an index")
    } else {
        None
    }
}

/// An identifier or raw identifier, by rustc's own rule (Unicode
/// `XID_Start`/`XID_Continue`, through the `unicode-ident` crate that
/// proc-macro2 uses too). rustc also NFC-normalizes identifiers; the
/// resolve step compares names through real `Ident`s, which do.
fn is_identifier(name: &str) -> bool {
    let name = name.strip_prefix("r#").unwrap_or(name);
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first == '_' || unicode_ident::is_xid_start(first) => {
            name != "_" && chars.all(unicode_ident::is_xid_continue)
        }
        _ => false,
    }
}

/// `0`, `1`, `12`, but not `01`: what rustc accepts after a `.`.
fn is_tuple_index(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'))
}

/// Escapes literal text for use in a `format!` string.
pub(crate) fn escape_format(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Segment {
        Segment::Text(s.to_owned())
    }

    /// Placeholder shorthand: `ph("order.id", 6..16)`.
    fn ph(path: &str, bytes: Range<usize>) -> Segment {
        let mut names = path.split('.').map(str::to_owned);
        Segment::Placeholder(Placeholder {
            root: names.next().unwrap(),
            fields: names.collect(),
            bytes,
        })
    }

    fn ok(template: &str) -> Vec<Segment> {
        match parse(template) {
            Ok(t) => t.segments,
            Err(e) => panic!("{template:?} should parse, got {e:?}"),
        }
    }

    fn errs(template: &str) -> Vec<TemplateError> {
        match parse(template) {
            Ok(t) => panic!("{template:?} should fail, got {t:?}"),
            Err(e) => e,
        }
    }

    fn one_err(template: &str) -> TemplateError {
        let mut all = errs(template);
        assert_eq!(all.len(), 1, "{template:?}: {all:?}");
        all.remove(0)
    }

    #[test]
    fn plain_text_is_one_segment() {
        assert_eq!(ok("orders"), [text("orders")]);
    }

    #[test]
    fn brace_placeholder() {
        assert_eq!(ok("order:{id}"), [text("order:"), ph("id", 6..10)]);
    }

    #[test]
    fn angle_placeholder() {
        assert_eq!(ok("order:<id>"), [text("order:"), ph("id", 6..10)]);
    }

    #[test]
    fn both_styles_in_one_template() {
        assert_eq!(
            ok("t:<tenant>:o:{id}"),
            [
                text("t:"),
                ph("tenant", 2..10),
                text(":o:"),
                ph("id", 13..17)
            ]
        );
    }

    #[test]
    fn placeholder_only() {
        assert_eq!(ok("{id}"), [ph("id", 0..4)]);
    }

    #[test]
    fn adjacent_placeholders() {
        assert_eq!(
            ok("{a}{b}<c>"),
            [ph("a", 0..3), ph("b", 3..6), ph("c", 6..9)]
        );
    }

    #[test]
    fn nested_fields() {
        assert_eq!(ok("{a.b.c}"), [ph("a.b.c", 0..7)]);
        assert_eq!(ok("<self.tenant>"), [ph("self.tenant", 0..13)]);
    }

    #[test]
    fn tuple_index_fields() {
        assert_eq!(
            ok("{pair.0}:{pair.1.x}"),
            [ph("pair.0", 0..8), text(":"), ph("pair.1.x", 9..19)]
        );
    }

    #[test]
    fn whitespace_inside_placeholders_is_ignored() {
        assert_eq!(ok("{ id }"), [ph("id", 0..6)]);
        assert_eq!(ok("< order . id >"), [ph("order.id", 0..14)]);
        assert_eq!(ok("{\tself.x\n}"), [ph("self.x", 0..10)]);
    }

    #[test]
    fn whitespace_outside_placeholders_is_kept() {
        assert_eq!(ok(" a {id} "), [text(" a "), ph("id", 3..7), text(" ")]);
    }

    #[test]
    fn all_four_escapes() {
        assert_eq!(ok("{{"), [text("{")]);
        assert_eq!(ok("}}"), [text("}")]);
        assert_eq!(ok("<<"), [text("<")]);
        assert_eq!(ok(">>"), [text(">")]);
        assert_eq!(ok("a{{b}}c<<d>>e"), [text("a{b}c<d>e")]);
    }

    #[test]
    fn escapes_around_placeholders() {
        // `{{{id}}}` is a literal `{`, the placeholder, a literal `}`.
        assert_eq!(ok("{{{id}}}"), [text("{"), ph("id", 2..6), text("}")]);
        assert_eq!(ok("<<<id>>>"), [text("<"), ph("id", 2..6), text(">")]);
        // The other style's escapes are plain text next to a placeholder.
        assert_eq!(ok("<<{id}>>"), [text("<"), ph("id", 2..6), text(">")]);
    }

    #[test]
    fn escaped_placeholder_is_text() {
        assert_eq!(ok("{{id}}"), [text("{id}")]);
        assert_eq!(ok("<<id>>"), [text("<id>")]);
    }

    #[test]
    fn unicode_text() {
        assert_eq!(
            ok("заказ:{id}:🔒"),
            [text("заказ:"), ph("id", 11..15), text(":🔒")]
        );
    }

    #[test]
    fn unicode_identifiers() {
        assert_eq!(ok("{größe}"), [ph("größe", 0..9)]);
        assert_eq!(ok("<заказ.номер>"), [ph("заказ.номер", 0..23)]);
        assert_eq!(ok("{_x1.ü_2}"), [ph("_x1.ü_2", 0..10)]);
    }

    #[test]
    fn identifiers_follow_rustc() {
        // `e` and a combining acute accent: XID_Continue, not alphanumeric.
        assert_eq!(ok("{e\u{301}}"), [ph("e\u{301}", 0..5)]);
        assert_eq!(ok("{x\u{200d}y}").len(), 1, "ZWJ is XID_Continue");
        for bad in ["{\u{301}e}", "{a\u{2028}b}", "{½}", "{a-b}"] {
            assert!(
                matches!(one_err(bad).kind, ErrorKind::InvalidPath { .. }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn expressions_and_format_specs_suggest_format() {
        for (bad, what) in [
            ("{order.id()}", "a method call"),
            ("{id:?}", "a format spec"),
            ("{id:08}", "a format spec"),
            ("{a::b}", "a path"),
            ("{ids[0]}", "an index"),
        ] {
            let e = one_err(bad);
            assert!(
                matches!(&e.kind, ErrorKind::NotAPath { what: w, .. } if *w == what),
                "{bad:?}: {e:?}"
            );
            assert!(e.to_string().contains("key = format!("), "{e}");
        }
    }

    #[test]
    fn error_columns_are_counted_in_linear_time() {
        // 20k errors over a 60k-character template: quadratic counting
        // would take seconds here.
        let template = "é}".repeat(20_000);
        let started = std::time::Instant::now();
        let all = errs(&template);
        assert_eq!(all.len(), 20_000);
        assert_eq!(all[19_999].column, 40_000);
        assert_eq!(all[19_999].bytes.start, 59_999);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn raw_identifiers() {
        assert_eq!(ok("{r#type}"), [ph("r#type", 0..8)]);
        assert_eq!(ok("{a.r#match}"), [ph("a.r#match", 0..11)]);
    }

    #[test]
    fn empty_template_is_an_error() {
        let e = one_err("");
        assert_eq!(e.kind, ErrorKind::Empty);
        assert_eq!(e.column, 1);
    }

    #[test]
    fn empty_placeholders_are_errors() {
        for (template, open, close) in [("{}", '{', '}'), ("<>", '<', '>'), ("{  }", '{', '}')] {
            let e = one_err(template);
            assert_eq!(e.kind, ErrorKind::EmptyPlaceholder { open, close });
            assert_eq!(e.bytes.start, 0);
        }
        let e = one_err("key:{}");
        assert_eq!(e.column, 5);
        assert_eq!(e.bytes, 4..6);
    }

    #[test]
    fn unclosed_brace_reports_its_position() {
        let e = one_err("order:{id");
        assert_eq!(e.kind, ErrorKind::Unclosed { open: '{' });
        assert_eq!(e.bytes, 6..7);
        assert_eq!(e.column, 7);
    }

    #[test]
    fn unclosed_angle_reports_its_position() {
        let e = one_err("a<b");
        assert_eq!(e.kind, ErrorKind::Unclosed { open: '<' });
        assert_eq!(e.column, 2);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let e = one_err("ключ:{");
        assert_eq!(e.bytes, 9..10);
        assert_eq!(e.column, 6);
    }

    #[test]
    fn stray_closers_are_errors() {
        let e = one_err("a}b");
        assert_eq!(e.kind, ErrorKind::Stray { close: '}' });
        assert_eq!(e.column, 2);
        let e = one_err("a->b");
        assert_eq!(e.kind, ErrorKind::Stray { close: '>' });
        assert_eq!(e.column, 3);
    }

    #[test]
    fn a_single_closer_after_a_placeholder_is_stray() {
        let e = one_err("{id}}");
        assert_eq!(e.kind, ErrorKind::Stray { close: '}' });
        assert_eq!(e.bytes, 4..5);
    }

    #[test]
    fn mismatched_brackets_are_errors() {
        let e = one_err("{id>");
        assert_eq!(
            e.kind,
            ErrorKind::Mismatched {
                open: '{',
                close: '>'
            }
        );
        assert_eq!(e.column, 4);
        let e = one_err("<id}");
        assert_eq!(
            e.kind,
            ErrorKind::Mismatched {
                open: '<',
                close: '}'
            }
        );
    }

    #[test]
    fn opening_inside_a_placeholder_reports_the_unclosed_one() {
        let all = errs("{a{b}");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].kind, ErrorKind::Unclosed { open: '{' });
        assert_eq!(all[0].column, 1);
        // The other style's opener is just a bad character in the path.
        let e = one_err("{a<b}");
        assert!(matches!(e.kind, ErrorKind::InvalidPath { .. }), "{e:?}");
    }

    #[test]
    fn every_error_is_reported() {
        let all = errs("{}:x}:{a b}:{id");
        let kinds: Vec<_> = all.iter().map(|e| (e.column, &e.kind)).collect();
        assert_eq!(
            kinds,
            [
                (
                    1,
                    &ErrorKind::EmptyPlaceholder {
                        open: '{',
                        close: '}'
                    }
                ),
                (5, &ErrorKind::Stray { close: '}' }),
                (
                    7,
                    &ErrorKind::InvalidPath {
                        text: "a b".into(),
                        reason: "expected a parameter name, optionally followed by `.field`s"
                    }
                ),
                (13, &ErrorKind::Unclosed { open: '{' }),
            ]
        );
    }

    #[test]
    fn invalid_paths() {
        for bad in [
            "{a.}", "{.a}", "{a..b}", "{1}", "{a-b}", "{a b}", "{a.b c}", "{_}", "{a.01}",
            "{a.self}", "{#}", "{a+b}",
        ] {
            let e = one_err(bad);
            assert!(
                matches!(e.kind, ErrorKind::InvalidPath { .. }),
                "{bad:?}: {e:?}"
            );
            assert_eq!(e.bytes, 0..bad.len(), "{bad:?}");
        }
    }

    #[test]
    fn messages_mention_the_position_and_the_fix() {
        let msg = one_err("order:{id").to_string();
        assert!(msg.contains("character 7"), "{msg}");
        assert!(msg.contains("`{{`"), "{msg}");
        let msg = one_err(">").to_string();
        assert!(msg.contains("`>>`"), "{msg}");
        let msg = one_err("a{}").to_string();
        assert!(msg.contains("`{}`") && msg.contains("`{id}`"), "{msg}");
    }

    #[test]
    fn escape_format_doubles_braces_only() {
        assert_eq!(escape_format("a{b}c<d>"), "a{{b}}c<d>");
    }
}
