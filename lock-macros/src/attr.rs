//! The attribute's arguments: parsed as written ([`Args`]), then validated
//! into the model the expansion works from ([`Config`]).
//!
//! Parsing only fails on broken syntax. Everything else (unknown, duplicate
//! or missing arguments, bad values) is collected, so the user sees all of
//! it in one build.

use std::time::Duration;

use proc_macro2::{Span, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, Ident, Lit, LitStr, Path, Token};

use crate::duration;
use crate::errors::{Errors, did_you_mean, list};
use crate::template::{self, Template};

mod kw {
    syn::custom_keyword!(key);
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(wait);
    syn::custom_keyword!(client);
    syn::custom_keyword!(fencing);
}

/// Default `ttl` when none is given.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// The names the attribute accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgName {
    Key,
    Ttl,
    Wait,
    Client,
    Fencing,
    Crate,
}

impl ArgName {
    const ALL: [ArgName; 6] = [
        ArgName::Key,
        ArgName::Ttl,
        ArgName::Wait,
        ArgName::Client,
        ArgName::Fencing,
        ArgName::Crate,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ArgName::Key => "key",
            ArgName::Ttl => "ttl",
            ArgName::Wait => "wait",
            ArgName::Client => "client",
            ArgName::Fencing => "fencing",
            ArgName::Crate => "crate",
        }
    }

    /// How the argument is written, for "needs a value" messages.
    fn example(self) -> &'static str {
        match self {
            ArgName::Key => "key = \"order:{id}\"",
            ArgName::Ttl => "ttl = \"10s\"",
            ArgName::Wait => "wait = \"2s\"",
            ArgName::Client => "client = self.locks.clone()",
            ArgName::Fencing => "fencing = true",
            ArgName::Crate => "crate = \"my_crate::lock_runtime\"",
        }
    }
}

/// One argument as written: `name` or `name = value`.
pub(crate) struct Arg {
    pub name: ArgName,
    pub span: Span,
    pub value: Option<Expr>,
}

/// The arguments as written, plus the unknown names found while parsing.
pub(crate) struct Args {
    pub args: Vec<Arg>,
    pub unknown: Errors,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Vec::new();
        let mut unknown = Errors::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            let name = if lookahead.peek(kw::key) {
                Some((ArgName::Key, input.parse::<kw::key>()?.span))
            } else if lookahead.peek(kw::ttl) {
                Some((ArgName::Ttl, input.parse::<kw::ttl>()?.span))
            } else if lookahead.peek(kw::wait) {
                Some((ArgName::Wait, input.parse::<kw::wait>()?.span))
            } else if lookahead.peek(kw::client) {
                Some((ArgName::Client, input.parse::<kw::client>()?.span))
            } else if lookahead.peek(kw::fencing) {
                Some((ArgName::Fencing, input.parse::<kw::fencing>()?.span))
            } else if lookahead.peek(Token![crate]) {
                Some((ArgName::Crate, input.parse::<Token![crate]>()?.span))
            } else if input.peek(Ident::peek_any) {
                let ident = input.call(Ident::parse_any)?;
                unknown.push(unknown_argument(&ident));
                skip_value(input)?;
                None
            } else if input.peek(LitStr) {
                return Err(input.error(
                    "arguments are named: write `key = \"...\"` rather than a bare string",
                ));
            } else {
                return Err(lookahead.error());
            };
            if let Some((name, span)) = name {
                let value = if input.peek(Token![=]) {
                    input.parse::<Token![=]>()?;
                    Some(input.parse::<Expr>()?)
                } else {
                    None
                };
                args.push(Arg { name, span, value });
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(Args { args, unknown })
    }
}

fn unknown_argument(ident: &Ident) -> syn::Error {
    let name = ident.unraw().to_string();
    let valid = ArgName::ALL.map(ArgName::as_str);
    syn::Error::new(
        ident.span(),
        format!(
            "unknown argument `{name}`{}; valid arguments are {}",
            did_you_mean(&name, valid),
            list(valid),
        ),
    )
}

/// Skips an unknown argument's value, whatever its shape, up to the next
/// top-level comma, so the arguments after it still get checked.
fn skip_value(input: ParseStream) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// The validated arguments.
pub(crate) struct Config {
    /// `None` only when `key` is missing or invalid; an error was recorded.
    pub key: Option<Key>,
    pub ttl: Duration,
    pub wait: Option<Duration>,
    pub client: Option<Expr>,
    pub fencing: bool,
    /// Path to the runtime crate, `::lock_runtime` unless `crate = "..."`.
    pub krate: Path,
}

/// What the lock key is made from.
pub(crate) enum Key {
    /// A string literal: checked and turned into a `format!` call.
    Template { lit: LitStr, template: Template },
    /// Any other expression, formatted with `Display` as it is.
    Expr(Box<Expr>),
}

impl Config {
    /// Validates the arguments, recording every problem in `errors`. The
    /// returned config is usable for further checks even when some
    /// arguments were bad (they fall back to their defaults).
    pub fn from_args(args: Args, errors: &mut Errors) -> Config {
        let Args { args, unknown } = args;
        if let Err(err) = unknown.finish() {
            errors.push(err);
        }

        let mut config = Config {
            key: None,
            ttl: DEFAULT_TTL,
            wait: None,
            client: None,
            fencing: false,
            krate: syn::parse_quote!(::lock_runtime),
        };
        let mut seen = Vec::new();
        let mut key_given = false;
        for arg in args {
            if !first_use(&mut seen, &arg, errors) {
                continue;
            }
            if arg.name == ArgName::Fencing {
                config.fencing = fencing(arg.value.as_ref(), errors);
                continue;
            }
            let Some(value) = arg.value else {
                let name = arg.name;
                errors.at(
                    arg.span,
                    format!(
                        "`{}` needs a value, as in `{}`",
                        name.as_str(),
                        name.example()
                    ),
                );
                key_given |= name == ArgName::Key;
                continue;
            };
            match arg.name {
                ArgName::Key => {
                    key_given = true;
                    config.key = key(value, errors);
                }
                ArgName::Ttl => {
                    if let Some(ttl) = duration_arg(&value, duration::parse_ttl, errors) {
                        config.ttl = ttl;
                    }
                }
                ArgName::Wait => config.wait = duration_arg(&value, duration::parse_wait, errors),
                ArgName::Client => config.client = Some(value),
                ArgName::Crate => {
                    if let Some(path) = crate_path(&value, errors) {
                        config.krate = path;
                    }
                }
                ArgName::Fencing => unreachable!("handled above"),
            }
        }
        if !key_given {
            errors.at(
                Span::call_site(),
                "missing `key` argument: name the lock, as in \
                 `#[distributed_lock(key = \"order:{id}\")]`",
            );
        }
        config
    }
}

/// The shared duplicate check: true the first time a name is seen,
/// otherwise records an error at the repeated name.
fn first_use(seen: &mut Vec<ArgName>, arg: &Arg, errors: &mut Errors) -> bool {
    if seen.contains(&arg.name) {
        errors.at(
            arg.span,
            format!("duplicate `{}` argument", arg.name.as_str()),
        );
        false
    } else {
        seen.push(arg.name);
        true
    }
}

/// Looks through the invisible groups `macro_rules!` wraps around `$e:expr`.
fn ungroup(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(group) => ungroup(&group.expr),
        other => other,
    }
}

fn string_literal(expr: &Expr) -> Option<&LitStr> {
    match ungroup(expr) {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Str(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn key(value: Expr, errors: &mut Errors) -> Option<Key> {
    let Some(lit) = string_literal(&value) else {
        return Some(Key::Expr(Box::new(value)));
    };
    match template::parse(&lit.value()) {
        Ok(template) => Some(Key::Template {
            lit: lit.clone(),
            template,
        }),
        Err(problems) => {
            for problem in problems {
                errors.at(template_span(lit, &problem.bytes), &problem);
            }
            None
        }
    }
}

/// The span of `bytes` inside a template literal, where the compiler can
/// point inside literals (nightly) and the literal has no escapes that
/// would shift the offsets; otherwise the whole literal.
pub(crate) fn template_span(lit: &LitStr, bytes: &std::ops::Range<usize>) -> Span {
    let token = lit.token();
    let source = token.to_string();
    let plain = source.len() == lit.value().len() + 2 && source.starts_with('"');
    if plain
        && bytes.end > bytes.start
        && let Some(span) = token.subspan(bytes.start + 1..bytes.end + 1)
    {
        return span;
    }
    lit.span()
}

fn duration_arg(
    value: &Expr,
    parse: fn(&str) -> Result<Duration, String>,
    errors: &mut Errors,
) -> Option<Duration> {
    let Some(lit) = string_literal(value) else {
        errors.push(syn::Error::new_spanned(
            value,
            "expected a duration string such as \"10s\", \"500ms\" or \"1m 30s\"",
        ));
        return None;
    };
    match parse(&lit.value()) {
        Ok(duration) => Some(duration),
        Err(message) => {
            errors.at(lit.span(), message);
            None
        }
    }
}

fn fencing(value: Option<&Expr>, errors: &mut Errors) -> bool {
    let Some(value) = value else {
        return true;
    };
    if let Expr::Lit(lit) = ungroup(value)
        && let Lit::Bool(b) = &lit.lit
    {
        return b.value();
    }
    errors.push(syn::Error::new_spanned(
        value,
        "`fencing` expects `true` or `false`; a bare `fencing` means `true`",
    ));
    false
}

fn crate_path(value: &Expr, errors: &mut Errors) -> Option<Path> {
    if let Some(lit) = string_literal(value) {
        match lit.parse_with(Path::parse_mod_style) {
            Ok(path) => return Some(path),
            Err(err) => {
                errors.at(lit.span(), format!("`crate` must be a path: {err}"));
                return None;
            }
        }
    }
    if let Expr::Path(path) = ungroup(value)
        && path.qself.is_none()
    {
        return Some(path.path.clone());
    }
    errors.push(syn::Error::new_spanned(
        value,
        "`crate` expects the path of the runtime crate, as in `crate = \"my_crate::lock_runtime\"`",
    ));
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn config(tokens: proc_macro2::TokenStream) -> Result<Config, Vec<String>> {
        let args: Args = syn::parse2(tokens).map_err(|e| vec![e.to_string()])?;
        let mut errors = Errors::default();
        let config = Config::from_args(args, &mut errors);
        match errors.finish() {
            Ok(()) => Ok(config),
            Err(e) => Err(e.into_iter().map(|e| e.to_string()).collect()),
        }
    }

    fn errors(tokens: proc_macro2::TokenStream) -> Vec<String> {
        match config(tokens) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e,
        }
    }

    fn one_error(tokens: proc_macro2::TokenStream) -> String {
        let mut all = errors(tokens);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[test]
    fn defaults() {
        let c = config(quote!(key = "k")).unwrap();
        assert_eq!(c.ttl, Duration::from_secs(30));
        assert_eq!(c.wait, None);
        assert!(c.client.is_none());
        assert!(!c.fencing);
        let krate = &c.krate;
        assert_eq!(
            quote!(#krate).to_string(),
            quote!(::lock_runtime).to_string()
        );
    }

    #[test]
    fn every_argument() {
        let c = config(quote!(
            key = "tenant:{self.tenant}",
            ttl = "1m 30s",
            wait = "2s",
            client = self.locks.clone(),
            fencing,
            crate = "my::rt",
        ))
        .unwrap();
        assert!(matches!(c.key, Some(Key::Template { .. })));
        assert_eq!(c.ttl, Duration::from_secs(90));
        assert_eq!(c.wait, Some(Duration::from_secs(2)));
        assert!(c.client.is_some());
        assert!(c.fencing);
        let krate = &c.krate;
        assert_eq!(quote!(#krate).to_string(), quote!(my::rt).to_string());
    }

    #[test]
    fn key_expression_is_kept() {
        let c = config(quote!(key = format!("batch:{}", ids.len()))).unwrap();
        assert!(matches!(c.key, Some(Key::Expr(_))));
    }

    #[test]
    fn fencing_forms() {
        assert!(config(quote!(key = "k", fencing = true)).unwrap().fencing);
        assert!(!config(quote!(key = "k", fencing = false)).unwrap().fencing);
        let e = one_error(quote!(key = "k", fencing = "yes"));
        assert!(e.contains("expects `true` or `false`"), "{e}");
    }

    #[test]
    fn crate_as_bare_path() {
        let c = config(quote!(key = "k", crate = ::other::rt)).unwrap();
        let krate = &c.krate;
        assert_eq!(quote!(#krate).to_string(), quote!(::other::rt).to_string());
    }

    #[test]
    fn missing_key() {
        let e = one_error(quote!(ttl = "1s"));
        assert!(e.starts_with("missing `key` argument"), "{e}");
        let e = one_error(quote!());
        assert!(e.starts_with("missing `key` argument"), "{e}");
    }

    #[test]
    fn key_without_value_is_not_also_missing() {
        let e = one_error(quote!(key));
        assert!(e.contains("`key` needs a value"), "{e}");
    }

    #[test]
    fn unknown_argument_lists_the_valid_ones() {
        let e = one_error(quote!(key = "k", tll = "1s"));
        assert!(
            e.contains("unknown argument `tll` (did you mean `ttl`?)"),
            "{e}"
        );
        assert!(
            e.contains("`key`, `ttl`, `wait`, `client`, `fencing`, `crate`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_argument_of_any_shape_is_skipped() {
        let all = errors(quote!(skip(a, b), key = "k", retries = 3 + 4, ttl = "0s"));
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all[0].contains("unknown argument `skip`"));
        assert!(all[1].contains("unknown argument `retries`"));
        assert!(all[2].contains("greater than zero"));
    }

    #[test]
    fn duplicates_are_reported_for_every_argument() {
        for name in ["key", "ttl", "wait", "client", "fencing", "crate"] {
            let arg: proc_macro2::TokenStream = match name {
                "key" => quote!(key = "a"),
                "ttl" => quote!(ttl = "1s"),
                "wait" => quote!(wait = "1s"),
                "client" => quote!(client = c),
                "fencing" => quote!(fencing),
                _ => quote!(crate = "x"),
            };
            let tokens = if name == "key" {
                quote!(#arg, #arg)
            } else {
                quote!(key = "k", #arg, #arg)
            };
            let e = one_error(tokens);
            assert_eq!(e, format!("duplicate `{name}` argument"));
        }
    }

    #[test]
    fn bad_durations() {
        assert!(one_error(quote!(key = "k", ttl = "10")).contains("time unit needed"));
        assert!(one_error(quote!(key = "k", ttl = "-1s")).contains("negative"));
        assert!(one_error(quote!(key = "k", ttl = "0ms")).contains("greater than zero"));
        assert!(one_error(quote!(key = "k", wait = "2h")).contains("almost surely a typo"));
        assert!(one_error(quote!(key = "k", ttl = 10)).contains("expected a duration string"));
    }

    #[test]
    fn all_problems_are_reported_together() {
        let all = errors(quote!(
            key = "{}",
            ttl = "x",
            wait = "9h",
            fencing = 1,
            nope
        ));
        assert_eq!(all.len(), 5, "{all:?}");
    }

    #[test]
    fn template_errors_become_argument_errors() {
        let all = errors(quote!(key = "a}{"));
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all[0].contains("unmatched `}`"));
        assert!(all[1].contains("unclosed `{`"));
    }

    #[test]
    fn bare_string_is_a_syntax_error() {
        let e = one_error(quote!("order:{id}"));
        assert!(e.contains("write `key = \"...\"`"), "{e}");
    }

    #[test]
    fn syntax_errors_are_fatal() {
        let e = one_error(quote!(key = "k" ttl = "1s"));
        assert_eq!(e, "expected `,`");
        let e = one_error(quote!(key = "k", 42));
        assert!(e.starts_with("expected one of: `key`"), "{e}");
    }

    #[test]
    fn trailing_comma_is_fine() {
        assert!(config(quote!(key = "k",)).is_ok());
    }
}
