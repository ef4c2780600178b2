//! The function's output type: for checking it (`LockResult`, `SkipResult`)
//! with errors at the user's return type, and for typing the body's future.

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote_spanned};
use syn::spanned::Spanned;
use syn::{ReturnType, Type};

/// The return type, for checking it and for typing the body's future.
pub(crate) struct Output {
    /// The type as written, with `impl Trait` replaced by `_`.
    pub ty: TokenStream,
    /// Where errors about it point: the type's name (`Result` in
    /// `io::Result<u8>`). A single token, because the compiler merges
    /// identical errors only at identical spans, and a span covering several
    /// tokens cannot be made on stable.
    pub span: Span,
    /// Whether `ty` names the type completely (no `_`), so it can be
    /// checked with `assert_lock_result::<ty>()`.
    pub complete: bool,
}

impl Output {
    pub fn new(ty: &Type) -> Output {
        let (ty_tokens, complete) = erase_impl_trait(ty);
        Output {
            ty: ty_tokens,
            span: name_span(ty),
            complete,
        }
    }

    /// The output of an `async fn`.
    pub fn of_fn(output: &ReturnType, fn_name: &Ident) -> Output {
        match output {
            ReturnType::Type(_, ty) => Output::new(ty),
            ReturnType::Default => Output {
                ty: quote_spanned!(fn_name.span()=> ()),
                span: fn_name.span(),
                complete: true,
            },
        }
    }

    /// The type with every token at `self.span`, for the checks: the
    /// assertion and the `run_locked` call then fail at the same span and
    /// the user sees one error.
    pub fn checked_ty(&self) -> TokenStream {
        respan(self.ty.clone(), self.span)
    }
}

/// Gives every token of `tokens` the span `span`.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                tree = TokenTree::Group(new);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

fn name_span(ty: &Type) -> Span {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .map_or_else(|| ty.span(), |s| s.ident.span()),
        Type::Group(group) => name_span(&group.elem),
        Type::Paren(paren) => name_span(&paren.elem),
        _ => ty.span(),
    }
}

/// `impl Trait` cannot be named in a function body; `_` lets the compiler
/// infer it. Returns the tokens and whether nothing was erased.
pub(crate) fn erase_impl_trait(ty: &Type) -> (TokenStream, bool) {
    let mut complete = true;
    let tokens = erase_in(ty.to_token_stream(), &mut complete);
    (tokens, complete)
}

fn erase_in(tokens: TokenStream, complete: &mut bool) -> TokenStream {
    // Works on tokens: an `impl` runs until a `,`, `>`, `)`, `]` or `;` at
    // the same nesting depth (angle brackets counted by hand, since they are
    // not groups).
    let mut out = Vec::new();
    let mut iter = tokens.into_iter().peekable();
    while let Some(tree) = iter.next() {
        match tree {
            TokenTree::Ident(ident) if ident == "impl" => {
                *complete = false;
                let mut depth = 0usize;
                let mut after_dash = false;
                while let Some(next) = iter.peek() {
                    if let TokenTree::Punct(p) = next {
                        match p.as_char() {
                            // The `>` of `->` in `impl Fn() -> T` closes nothing.
                            '>' if after_dash => {}
                            '<' => depth += 1,
                            '>' if depth > 0 => depth -= 1,
                            ',' | '>' | ';' if depth == 0 => break,
                            _ => {}
                        }
                        after_dash = p.as_char() == '-';
                    } else {
                        after_dash = false;
                    }
                    iter.next();
                }
                out.push(TokenTree::Ident(Ident::new("_", ident.span())));
            }
            TokenTree::Group(group) => {
                let mut new = Group::new(group.delimiter(), erase_in(group.stream(), complete));
                new.set_span(group.span());
                out.push(TokenTree::Group(new));
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn erasing_impl_trait_respects_nesting() {
        let ty: Type =
            syn::parse_quote!(Result<(impl Fn(u8) -> Vec<u8>, Box<impl Iterator<Item = u8>>), E>);
        let (tokens, complete) = erase_impl_trait(&ty);
        assert!(!complete);
        assert_eq!(
            tokens.to_string(),
            quote!(Result<(_, Box<_>), E>).to_string()
        );
    }

    #[test]
    fn complete_types_are_kept() {
        let ty: Type = syn::parse_quote!(io::Result<Vec<u8>>);
        let (tokens, complete) = erase_impl_trait(&ty);
        assert!(complete);
        assert_eq!(tokens.to_string(), quote!(#ty).to_string());
    }
}
