//! The attribute's arguments: parsed as written ([`Args`]), then validated
//! into the model the expansion works from ([`Config`]).
//!
//! Nothing here stops at the first problem. A syntax error is recorded and
//! parsing resumes at the next top-level comma; unknown, duplicate or
//! missing arguments and bad values are recorded too, so the user sees all
//! of it in one build.

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
    syn::custom_keyword!(watchdog);
    syn::custom_keyword!(on_busy);
    syn::custom_keyword!(min_hold);
    syn::custom_keyword!(max_hold);
}

/// The names the attribute accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgName {
    Key,
    Ttl,
    Wait,
    Client,
    Fencing,
    Watchdog,
    OnBusy,
    MinHold,
    MaxHold,
    Crate,
}

impl ArgName {
    const ALL: [ArgName; 10] = [
        ArgName::Key,
        ArgName::Ttl,
        ArgName::Wait,
        ArgName::Client,
        ArgName::Fencing,
        ArgName::Watchdog,
        ArgName::OnBusy,
        ArgName::MinHold,
        ArgName::MaxHold,
        ArgName::Crate,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ArgName::Key => "key",
            ArgName::Ttl => "ttl",
            ArgName::Wait => "wait",
            ArgName::Client => "client",
            ArgName::Fencing => "fencing",
            ArgName::Watchdog => "watchdog",
            ArgName::OnBusy => "on_busy",
            ArgName::MinHold => "min_hold",
            ArgName::MaxHold => "max_hold",
            ArgName::Crate => "crate",
        }
    }

    /// How the argument is written, for "needs a value" messages.
    fn example(self) -> &'static str {
        match self {
            ArgName::Key => "key = \"order:{id}\"",
            ArgName::Ttl => "ttl = \"10s\"",
            ArgName::Wait => "wait = \"2s\"",
            ArgName::Client => "client = &self.locks",
            ArgName::Fencing => "fencing = true",
            ArgName::Watchdog => "watchdog = false",
            ArgName::OnBusy => "on_busy = \"skip\"",
            ArgName::MinHold => "min_hold = \"30s\"",
            ArgName::MaxHold => "max_hold = \"10m\"",
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

/// The arguments as written, plus the problems found while parsing them
/// (unknown names, syntax errors).
pub(crate) struct Args {
    pub args: Vec<Arg>,
    pub errors: Errors,
    /// A bare string was given, surely meant as the key: not also "missing".
    pub bare_string: bool,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Vec::new();
        let mut errors = Errors::default();
        let mut bare_string = false;
        while !input.is_empty() {
            bare_string |= input.peek(LitStr);
            match parse_arg(input) {
                Ok(Some(arg)) => args.push(arg),
                Ok(None) => {}
                Err(err) => {
                    errors.push(err);
                    skip_value(input)?;
                }
            }
            if input.is_empty() {
                break;
            }
            if !input.peek(Token![,]) {
                errors.push(input.error("expected `,`"));
                skip_value(input)?;
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(Args {
            args,
            errors,
            bare_string,
        })
    }
}

/// One argument; `Ok(None)` for an unknown one (recorded as an error by
/// the caller's skipping, with its value skipped).
fn parse_arg(input: ParseStream) -> syn::Result<Option<Arg>> {
    let lookahead = input.lookahead1();
    let (name, span) = if lookahead.peek(kw::key) {
        (ArgName::Key, input.parse::<kw::key>()?.span)
    } else if lookahead.peek(kw::ttl) {
        (ArgName::Ttl, input.parse::<kw::ttl>()?.span)
    } else if lookahead.peek(kw::wait) {
        (ArgName::Wait, input.parse::<kw::wait>()?.span)
    } else if lookahead.peek(kw::client) {
        (ArgName::Client, input.parse::<kw::client>()?.span)
    } else if lookahead.peek(kw::fencing) {
        (ArgName::Fencing, input.parse::<kw::fencing>()?.span)
    } else if lookahead.peek(kw::watchdog) {
        (ArgName::Watchdog, input.parse::<kw::watchdog>()?.span)
    } else if lookahead.peek(kw::on_busy) {
        (ArgName::OnBusy, input.parse::<kw::on_busy>()?.span)
    } else if lookahead.peek(kw::min_hold) {
        (ArgName::MinHold, input.parse::<kw::min_hold>()?.span)
    } else if lookahead.peek(kw::max_hold) {
        (ArgName::MaxHold, input.parse::<kw::max_hold>()?.span)
    } else if lookahead.peek(Token![crate]) {
        (ArgName::Crate, input.parse::<Token![crate]>()?.span)
    } else if input.peek(Ident::peek_any) {
        let ident = input.call(Ident::parse_any)?;
        return Err(unknown_argument(&ident));
    } else if input.peek(LitStr) {
        return Err(
            input.error("arguments are named: write `key = \"...\"` rather than a bare string")
        );
    } else {
        return Err(lookahead.error());
    };
    let value = if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        Some(input.parse::<Expr>()?)
    } else {
        None
    };
    Ok(Some(Arg { name, span, value }))
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

/// Skips the rest of a bad argument, whatever its shape, up to the next
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
    /// `None`: the runtime's default.
    pub ttl: Option<DurationArg>,
    pub wait: Option<DurationArg>,
    pub min_hold: Option<DurationArg>,
    pub max_hold: Option<DurationArg>,
    pub client: Option<Expr>,
    pub fencing: bool,
    pub watchdog: bool,
    pub on_busy: OnBusy,
    /// Path to the runtime crate, `::lock_runtime` unless `crate = "..."`.
    pub krate: Path,
}

/// What a call does when the lock is held elsewhere (after any `wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnBusy {
    /// Return `Err(LockError::Busy)` through the function's error type.
    Error,
    /// Skip the body: `Ok(None)` or `Ok(())`.
    Skip,
}

/// A duration argument.
pub(crate) enum DurationArg {
    /// A string literal, parsed and checked now.
    Literal { value: Duration, lit: LitStr },
    /// Any other expression of type `Duration`, checked by the runtime.
    Expr(Box<Expr>),
}

impl DurationArg {
    #[cfg(test)]
    pub fn literal(&self) -> Option<Duration> {
        match self {
            DurationArg::Literal { value, .. } => Some(*value),
            DurationArg::Expr(_) => None,
        }
    }
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
        let Args {
            args,
            errors: parse_errors,
            bare_string,
        } = args;
        if let Err(err) = parse_errors.finish() {
            errors.push(err);
        }

        let mut config = Config {
            key: None,
            ttl: None,
            wait: None,
            min_hold: None,
            max_hold: None,
            client: None,
            fencing: false,
            watchdog: true,
            on_busy: OnBusy::Error,
            krate: syn::parse_quote!(::lock_runtime),
        };
        let mut seen = Vec::new();
        let mut key_given = bare_string;
        for arg in args {
            key_given |= arg.name == ArgName::Key;
            if !first_use(&mut seen, &arg, errors) {
                continue;
            }
            match arg.name {
                ArgName::Fencing => {
                    let on = flag(arg.name, arg.value.as_ref(), errors);
                    config.fencing = on.unwrap_or(config.fencing);
                    continue;
                }
                ArgName::Watchdog => {
                    let on = flag(arg.name, arg.value.as_ref(), errors);
                    config.watchdog = on.unwrap_or(config.watchdog);
                    continue;
                }
                _ => {}
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
                continue;
            };
            match arg.name {
                ArgName::Key => config.key = key(value, errors),
                ArgName::Ttl => config.ttl = duration_arg(value, duration::parse, errors),
                ArgName::Wait => config.wait = duration_arg(value, duration::parse_wait, errors),
                ArgName::MinHold => {
                    config.min_hold = duration_arg(value, duration::parse, errors);
                }
                ArgName::MaxHold => {
                    config.max_hold = duration_arg(value, duration::parse, errors);
                }
                ArgName::OnBusy => {
                    if let Some(on_busy) = on_busy(&value, errors) {
                        config.on_busy = on_busy;
                    }
                }
                ArgName::Client => config.client = Some(value),
                ArgName::Crate => {
                    if let Some(path) = crate_path(&value, errors) {
                        config.krate = path;
                    }
                }
                ArgName::Fencing | ArgName::Watchdog => unreachable!("handled above"),
            }
        }
        if let (
            Some(DurationArg::Literal {
                value: min,
                lit: min_lit,
            }),
            Some(DurationArg::Literal { value: max, .. }),
        ) = (&config.min_hold, &config.max_hold)
            && min > max
        {
            errors.at(
                min_lit.span(),
                format!(
                    "`min_hold` ({min:?}) is longer than `max_hold` ({max:?}): the lock cannot \
                     be kept at least {min:?} and at most {max:?}; make `min_hold` at most \
                     `max_hold`"
                ),
            );
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
/// otherwise records an error at the repeated name, with a note at the
/// first.
fn first_use(seen: &mut Vec<(ArgName, Span)>, arg: &Arg, errors: &mut Errors) -> bool {
    let name = arg.name.as_str();
    if let Some(&(_, first)) = seen.iter().find(|(seen, _)| *seen == arg.name) {
        errors.with_note(
            arg.span,
            format!("duplicate `{name}` argument; remove this one or the first"),
            first,
            format!("note: the first `{name}` argument is here"),
        );
        false
    } else {
        seen.push((arg.name, arg.span));
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

/// A string literal is parsed now; any other expression is passed to the
/// runtime as a `Duration`.
fn duration_arg(
    value: Expr,
    parse: fn(&str) -> Result<Duration, String>,
    errors: &mut Errors,
) -> Option<DurationArg> {
    let Some(lit) = string_literal(&value) else {
        if let Expr::Lit(number) = ungroup(&value)
            && matches!(number.lit, Lit::Int(_) | Lit::Float(_))
        {
            errors.push(syn::Error::new_spanned(
                &value,
                "a bare number has no unit: write a duration string such as \"10s\", \
                 \"500ms\" or \"1m 30s\", or an expression of type `Duration`",
            ));
            return None;
        }
        return Some(DurationArg::Expr(Box::new(value)));
    };
    match parse(&lit.value()) {
        Ok(duration) => Some(DurationArg::Literal {
            value: duration,
            lit: lit.clone(),
        }),
        Err(message) => {
            errors.at(lit.span(), message);
            None
        }
    }
}

/// `fencing`, `watchdog`: bare means `true`, or `= true` / `= false`.
/// `None` (an error recorded) for anything else.
fn flag(name: ArgName, value: Option<&Expr>, errors: &mut Errors) -> Option<bool> {
    let Some(value) = value else {
        return Some(true);
    };
    if let Expr::Lit(lit) = ungroup(value)
        && let Lit::Bool(b) = &lit.lit
    {
        return Some(b.value());
    }
    let name = name.as_str();
    errors.push(syn::Error::new_spanned(
        value,
        format!("`{name}` expects `true` or `false`; a bare `{name}` means `true`"),
    ));
    None
}

fn on_busy(value: &Expr, errors: &mut Errors) -> Option<OnBusy> {
    const EXPECTED: &str = "`on_busy` expects \"error\" (the default: fail with `LockError::Busy`) or \"skip\" \
         (do not run the body: return `Ok(None)` or `Ok(())`)";
    let Some(lit) = string_literal(value) else {
        errors.push(syn::Error::new_spanned(value, EXPECTED));
        return None;
    };
    match lit.value().as_str() {
        "error" => Some(OnBusy::Error),
        "skip" => Some(OnBusy::Skip),
        other => {
            let hint = did_you_mean(other, ["error", "skip"]);
            errors.at(
                lit.span(),
                format!("unknown `on_busy` value {other:?}{hint}; {EXPECTED}"),
            );
            None
        }
    }
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

    fn literal(arg: &Option<DurationArg>) -> Option<Duration> {
        arg.as_ref().and_then(DurationArg::literal)
    }

    #[test]
    fn defaults() {
        let c = config(quote!(key = "k")).unwrap();
        assert!(c.ttl.is_none(), "the runtime's default");
        assert!(c.wait.is_none() && c.min_hold.is_none() && c.max_hold.is_none());
        assert!(c.client.is_none());
        assert!(!c.fencing);
        assert!(c.watchdog);
        assert_eq!(c.on_busy, OnBusy::Error);
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
            watchdog = false,
            on_busy = "skip",
            min_hold = "30s",
            max_hold = "10m",
            crate = "my::rt",
        ))
        .unwrap();
        assert!(matches!(c.key, Some(Key::Template { .. })));
        assert_eq!(literal(&c.ttl), Some(Duration::from_secs(90)));
        assert_eq!(literal(&c.wait), Some(Duration::from_secs(2)));
        assert_eq!(literal(&c.min_hold), Some(Duration::from_secs(30)));
        assert_eq!(literal(&c.max_hold), Some(Duration::from_secs(600)));
        assert!(c.client.is_some());
        assert!(c.fencing);
        assert!(!c.watchdog);
        assert_eq!(c.on_busy, OnBusy::Skip);
        let krate = &c.krate;
        assert_eq!(quote!(#krate).to_string(), quote!(my::rt).to_string());
    }

    #[test]
    fn durations_may_be_expressions() {
        let c = config(quote!(
            key = "k",
            ttl = TTL,
            wait = config.wait,
            min_hold = Duration::from_secs(1),
            max_hold = max()
        ))
        .unwrap();
        for arg in [&c.ttl, &c.wait, &c.min_hold, &c.max_hold] {
            assert!(matches!(arg, Some(DurationArg::Expr(_))));
        }
    }

    #[test]
    fn key_expression_is_kept() {
        let c = config(quote!(key = format!("batch:{}", ids.len()))).unwrap();
        assert!(matches!(c.key, Some(Key::Expr(_))));
    }

    #[test]
    fn flag_forms() {
        assert!(config(quote!(key = "k", fencing = true)).unwrap().fencing);
        assert!(!config(quote!(key = "k", fencing = false)).unwrap().fencing);
        assert!(config(quote!(key = "k", watchdog)).unwrap().watchdog);
        assert!(
            !config(quote!(key = "k", watchdog = false))
                .unwrap()
                .watchdog
        );
        let e = one_error(quote!(key = "k", fencing = "yes"));
        assert!(e.contains("`fencing` expects `true` or `false`"), "{e}");
        let e = one_error(quote!(key = "k", watchdog = 0));
        assert!(e.contains("`watchdog` expects `true` or `false`"), "{e}");
    }

    #[test]
    fn on_busy_values() {
        let c = config(quote!(key = "k", on_busy = "error")).unwrap();
        assert_eq!(c.on_busy, OnBusy::Error);
        let e = one_error(quote!(key = "k", on_busy = "skp"));
        assert!(e.contains("(did you mean `skip`?)"), "{e}");
        let e = one_error(quote!(key = "k", on_busy = skip));
        assert!(e.contains("expects \"error\""), "{e}");
    }

    #[test]
    fn min_hold_longer_than_max_hold() {
        let e = one_error(quote!(key = "k", min_hold = "30s", max_hold = "10s"));
        assert!(
            e.contains("`min_hold` (30s) is longer than `max_hold` (10s)"),
            "{e}"
        );
        assert!(config(quote!(key = "k", min_hold = "10s", max_hold = "10s")).is_ok());
        // Not both literals: the runtime checks.
        assert!(config(quote!(key = "k", min_hold = "30s", max_hold = MAX)).is_ok());
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
            e.contains(
                "`key`, `ttl`, `wait`, `client`, `fencing`, `watchdog`, `on_busy`, `min_hold`, \
                 `max_hold`, `crate`"
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_argument_of_any_shape_is_skipped() {
        let all = errors(quote!(skip(a, b), key = "k", retries = 3 + 4, ttl = "x"));
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all[0].contains("unknown argument `skip`"));
        assert!(all[1].contains("unknown argument `retries`"));
        assert!(all[2].contains("invalid duration"));
    }

    #[test]
    fn duplicates_are_reported_for_every_argument_with_a_note() {
        for name in ArgName::ALL.map(ArgName::as_str) {
            let arg: proc_macro2::TokenStream = match name {
                "key" => quote!(key = "a"),
                "client" => quote!(client = c),
                "fencing" => quote!(fencing),
                "watchdog" => quote!(watchdog),
                "on_busy" => quote!(on_busy = "skip"),
                "crate" => quote!(crate = "x"),
                _ => {
                    let name = Ident::new(name, Span::call_site());
                    quote!(#name = "1s")
                }
            };
            let tokens = if name == "key" {
                quote!(#arg, #arg)
            } else {
                quote!(key = "k", #arg, #arg)
            };
            let all = errors(tokens);
            assert_eq!(
                all,
                [
                    format!("duplicate `{name}` argument; remove this one or the first"),
                    format!("note: the first `{name}` argument is here"),
                ]
            );
        }
    }

    #[test]
    fn bad_durations() {
        assert!(one_error(quote!(key = "k", ttl = "10")).contains("time unit needed"));
        assert!(one_error(quote!(key = "k", ttl = "-1s")).contains("negative"));
        assert!(one_error(quote!(key = "k", wait = "2h")).contains("almost surely a typo"));
        assert!(one_error(quote!(key = "k", min_hold = "x")).contains("invalid duration"));
        assert!(one_error(quote!(key = "k", ttl = 10)).contains("a bare number has no unit"));
        assert!(one_error(quote!(key = "k", wait = 1.5)).contains("a bare number has no unit"));
        // The TTL's range is the runtime's, checked in a `const` by the expansion.
        assert!(config(quote!(key = "k", ttl = "0ms")).is_ok());
    }

    #[test]
    fn overflowing_durations_are_errors_not_panics() {
        for arg in ["ttl", "wait", "min_hold", "max_hold"] {
            let name = Ident::new(arg, Span::call_site());
            let e = one_error(quote!(key = "k", #name = "18446744073709551615s 1000ms"));
            assert!(e.contains("too large"), "{arg}: {e}");
        }
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
    fn bare_string_is_an_error() {
        let e = one_error(quote!("order:{id}"));
        assert!(e.contains("write `key = \"...\"`"), "{e}");
    }

    #[test]
    fn syntax_errors_keep_the_errors_before_and_after_them() {
        let e = one_error(quote!(key = "k" ttl = "1s"));
        assert_eq!(e, "expected `,`");
        let e = one_error(quote!(key = "k", 42));
        assert!(e.starts_with("expected one of: `key`"), "{e}");
        let all = errors(quote!(tll = "1s", key = "k", wait = = 3, fencing = 1));
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all[0].contains("unknown argument `tll`"), "{all:?}");
        assert!(all[1].contains("expected an expression"), "{all:?}");
        assert!(all[2].contains("`fencing` expects"), "{all:?}");
    }

    #[test]
    fn trailing_comma_is_fine() {
        assert!(config(quote!(key = "k",)).is_ok());
    }
}
