//! The resolve step: a key template's placeholders checked against the
//! function's parameters, and turned into expressions.
//!
//! A placeholder becomes the parameter's own identifier: its hygiene (so it
//! resolves wherever a `macro_rules!` put the template and the signature),
//! located at the template (so errors about it point there).

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{LitStr, Member};

use crate::async_trait::replace_self;
use crate::attr::{Key, template_span};
use crate::errors::{Errors, did_you_mean, list};
use crate::item::Params;
use crate::template::{Placeholder, Segment, escape_format};

/// Where the key and the client are evaluated.
pub(crate) struct Scope<'a> {
    pub params: &'a Params,
    pub fn_name: &'a Ident,
    /// Under `#[async_trait]`, which renamed `self` to `__self`.
    pub async_trait: bool,
}

impl Scope<'_> {
    /// An expression from the attribute (`key = expr`, `client = expr`), as
    /// it is written, except for `self` under `#[async_trait]`.
    pub fn expr(&self, expr: &impl ToTokens) -> TokenStream {
        match (self.async_trait, self.params.receiver) {
            (true, Some(receiver)) => replace_self(expr.to_token_stream(), receiver),
            _ => expr.to_token_stream(),
        }
    }
}

/// The key, ready to generate.
pub(crate) enum KeyExpr {
    /// A template without placeholders: its unescaped text.
    Text(LitStr),
    /// `format!(format, args..)` for a template with placeholders.
    Format {
        format: LitStr,
        args: Vec<TokenStream>,
    },
    /// `key = expr`, formatted with `Display`.
    Display(TokenStream),
}

/// Resolves the key, recording every placeholder that names nothing.
pub(crate) fn key(key: &Key, scope: &Scope, errors: &mut Errors) -> Option<KeyExpr> {
    let (lit, template) = match key {
        Key::Expr(expr) => return Some(KeyExpr::Display(scope.expr(expr))),
        Key::Template { lit, template } => (lit, template),
    };
    let mut format = String::new();
    let mut text = String::new();
    let mut args = Vec::new();
    let mut ok = true;
    for segment in &template.segments {
        match segment {
            Segment::Text(t) => {
                format.push_str(&escape_format(t));
                text.push_str(t);
            }
            Segment::Placeholder(placeholder) => {
                format.push_str("{}");
                match placeholder_expr(placeholder, lit, scope) {
                    Ok(arg) => args.push(arg),
                    Err(err) => {
                        errors.push(err);
                        ok = false;
                    }
                }
            }
        }
    }
    if !ok {
        return None;
    }
    if args.is_empty() {
        return Some(KeyExpr::Text(LitStr::new(&text, lit.span())));
    }
    // The format string is ours, not the user's: spanned at the call site so
    // lints about format strings leave it alone.
    Some(KeyExpr::Format {
        format: LitStr::new(&format, Span::call_site()),
        args,
    })
}

/// A name as the compiler sees it: inside a proc macro, lexing goes through
/// rustc, which NFC-normalizes identifiers (`e\u{301}` is `é`).
fn normalized(name: &str) -> String {
    let mut tokens = name.parse::<TokenStream>().ok().into_iter().flatten();
    match (tokens.next(), tokens.next()) {
        (Some(TokenTree::Ident(ident)), None) => ident.unraw().to_string(),
        _ => name.to_owned(),
    }
}

/// `order.id` for `{order.id}`, checked against the parameters.
fn placeholder_expr(
    placeholder: &Placeholder,
    lit: &LitStr,
    scope: &Scope,
) -> syn::Result<TokenStream> {
    let Scope {
        params, fn_name, ..
    } = scope;
    let span = template_span(lit, &placeholder.bytes);
    // As the user wrote it, brackets and spacing included.
    let written = lit.value()[placeholder.bytes.clone()].to_owned();
    let root = if placeholder.root == "self" {
        let Some(receiver) = params.receiver else {
            return Err(syn::Error::new(
                span,
                format!(
                    "placeholder `{written}` uses `self`, but `{fn_name}` has no `self` \
                     parameter: it is not a method"
                ),
            ));
        };
        let name = if scope.async_trait { "__self" } else { "self" };
        Ident::new(name, receiver.located_at(span)).into_token_stream()
    } else {
        let wanted = normalized(
            placeholder
                .root
                .strip_prefix("r#")
                .unwrap_or(&placeholder.root),
        );
        let same = |ident: &&Ident| ident.unraw() == wanted;
        if let Some(param) = params.named.iter().find(same) {
            let mut ident = param.clone();
            ident.set_span(param.span().located_at(span));
            ident.into_token_stream()
        } else if params.destructured.iter().any(|ident| same(&ident)) {
            return Err(syn::Error::new(
                span,
                format!(
                    "placeholder `{written}` names `{wanted}`, which is bound inside a \
                     destructuring pattern of `{fn_name}`; placeholders can only name a whole \
                     parameter: give the parameter a name and reach into it with a field path, \
                     as in `{{order.id}}` or `{{pair.0}}`"
                ),
            ));
        } else {
            return Err(unknown_placeholder(&written, &wanted, span, scope));
        }
    };
    let mut fields = Vec::new();
    for field in &placeholder.fields {
        let member = if field.bytes().all(|b| b.is_ascii_digit()) {
            field
                .parse::<u32>()
                .ok()
                .map(|index| Member::Unnamed(syn::Index { index, span }))
        } else {
            syn::parse_str::<Ident>(field).ok().map(|mut ident| {
                ident.set_span(span);
                Member::Named(ident)
            })
        };
        let Some(member) = member else {
            return Err(syn::Error::new(
                span,
                format!("placeholder `{written}`: `{field}` is not a valid field name"),
            ));
        };
        fields.push(member);
    }
    Ok(quote_spanned!(span=> #root #(. #fields)*))
}

fn unknown_placeholder(written: &str, wanted: &str, span: Span, scope: &Scope) -> syn::Error {
    let Scope {
        params, fn_name, ..
    } = scope;
    let mut names: Vec<String> = Vec::new();
    if params.receiver.is_some() {
        names.push("self".to_owned());
    }
    names.extend(params.named.iter().map(|i| i.unraw().to_string()));
    let hint = did_you_mean(wanted, names.iter().map(String::as_str));
    let available = if names.is_empty() {
        format!("`{fn_name}` has no parameters a key can use")
    } else {
        format!(
            "the parameters are {}",
            list(names.iter().map(String::as_str))
        )
    };
    syn::Error::new(
        span,
        format!(
            "placeholder `{written}` does not name a parameter of `{fn_name}`{hint}; {available}"
        ),
    )
}

impl KeyExpr {
    /// The expression giving the key, for `Spec::new`.
    pub fn tokens(&self, krate: &syn::Path) -> TokenStream {
        match self {
            KeyExpr::Text(text) => quote!(#text),
            KeyExpr::Format { format, args } => {
                quote!(#krate::__private::format!(#format, #(#args),*))
            }
            KeyExpr::Display(expr) => quote!(#krate::__private::format!("{}", #expr)),
        }
    }
}
