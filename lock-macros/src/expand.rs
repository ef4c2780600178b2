//! From the validated arguments and the parsed function to the output.
//!
//! The expansion stays thin: it builds the key and the options, then hands
//! the body, as a future, to one runtime function:
//!
//! ```text
//! async fn settle(id: u64) -> Result<Receipt, AppError> {   // the user's tokens
//!     let __lock_spec = ::lock_runtime::__private::Spec {
//!         key: ::lock_runtime::__private::format!("order:{}", id),
//!         ttl: ::core::time::Duration::from_millis(10000u64),
//!         wait: ::core::option::Option::None,
//!         fencing: false,
//!     };
//!     let __lock_client = ::lock_runtime::__private::global_client();
//!     // Spanned at `Result` in the signature: a bad return type fails here.
//!     ::lock_runtime::__private::assert_lock_result::<Result<Receipt, AppError>>();
//!     ::lock_runtime::__private::run_locked::<Result<Receipt, AppError>, _>(
//!         __lock_client,
//!         __lock_spec,
//!         async move {
//!             // Fixes the block's output type before the body is checked.
//!             if let ::core::option::Option::Some(__lock_ret) =
//!                 ::core::option::Option::None::<Result<Receipt, AppError>>
//!             {
//!                 return __lock_ret;
//!             }
//!             { /* the user's body, unchanged */ }
//!         },
//!     )
//!     .await
//! }
//! ```
//!
//! The `__lock_*` locals have mixed-site hygiene. For a function
//! `#[async_trait]` already rewrote (a plain `fn` ending in
//! `Box::pin(async move { .. })`), the same code goes inside that async
//! block instead, around its contents.

use std::time::Duration;

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, LitStr, Member, ReturnType, Type};

use crate::attr::{Args, Config, Key, template_span};
use crate::errors::{Errors, did_you_mean, list};
use crate::item::{Body, LockedFn, Params, Shape};
use crate::template::{Placeholder, Segment, escape_format};

/// The whole macro on `proc_macro2` types. On any error the item is
/// emitted unchanged next to the errors, so the function keeps existing
/// for the rest of the crate (and for rust-analyzer), and the user sees our
/// errors rather than a cascade about a missing function.
pub(crate) fn distributed_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args, item.clone()) {
        Ok(tokens) => tokens,
        Err(err) => {
            let mut tokens = item;
            tokens.extend(err.into_compile_error());
            tokens
        }
    }
}

fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let config = match syn::parse2::<Args>(args) {
        Ok(args) => Some(Config::from_args(args, &mut errors)),
        Err(err) => {
            errors.push(err);
            None
        }
    };
    let func = match syn::parse2::<LockedFn>(item) {
        Ok(func) => Some(func),
        Err(err) => {
            errors.push(err);
            None
        }
    };
    let shape = func.as_ref().and_then(|func| Shape::of(func, &mut errors));
    let key = match (&config, &func) {
        (Some(config), Some(func)) => config
            .key
            .as_ref()
            .and_then(|key| key_expr(key, func, &config.krate, &mut errors)),
        _ => None,
    };
    errors.finish()?;
    match (config, func, shape, key) {
        (Some(config), Some(func), Some(shape), Some(key)) => {
            Ok(generate(&config, func, shape, &key))
        }
        _ => unreachable!("every missing piece recorded an error"),
    }
}

/// The expression giving the key `String`.
fn key_expr(
    key: &Key,
    func: &LockedFn,
    krate: &syn::Path,
    errors: &mut Errors,
) -> Option<TokenStream> {
    match key {
        Key::Expr(expr) => Some(quote! {
            #krate::__private::format!("{}", #expr)
        }),
        Key::Template { lit, template } => {
            let params = Params::of(&func.sig);
            let mut format = String::new();
            let mut args = Vec::new();
            let mut ok = true;
            for segment in &template.segments {
                match segment {
                    Segment::Text(text) => format.push_str(&escape_format(text)),
                    Segment::Placeholder(placeholder) => {
                        format.push_str("{}");
                        match placeholder_expr(placeholder, lit, &params, &func.sig.ident) {
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
                // No placeholders: the unescaped text is the key.
                let text = LitStr::new(&template_text(&template.segments), lit.span());
                return Some(quote!(::core::convert::From::from(#text)));
            }
            // The format string is ours, not the user's: spanned at the call
            // site so lints about format strings leave it alone.
            let format = LitStr::new(&format, Span::call_site());
            Some(quote! {
                #krate::__private::format!(#format, #(#args),*)
            })
        }
    }
}

fn template_text(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| match s {
            Segment::Text(text) => text.as_str(),
            Segment::Placeholder(_) => unreachable!("only called without placeholders"),
        })
        .collect()
}

/// `order.id` for `{order.id}`, checked against the parameters and spanned
/// at the template, so a missing `Display` impl points there.
fn placeholder_expr(
    placeholder: &Placeholder,
    lit: &LitStr,
    params: &Params,
    fn_name: &Ident,
) -> syn::Result<TokenStream> {
    let span = template_span(lit, &placeholder.bytes);
    // As the user wrote it, brackets and spacing included.
    let written = lit.value()[placeholder.bytes.clone()].to_owned();
    let root = if placeholder.root == "self" {
        if params.receiver.is_none() {
            return Err(syn::Error::new(
                span,
                format!(
                    "placeholder `{written}` uses `self`, but `{fn_name}` has no `self` \
                     parameter: it is not a method"
                ),
            ));
        }
        quote_spanned!(span=> self)
    } else {
        let wanted = placeholder
            .root
            .strip_prefix("r#")
            .unwrap_or(&placeholder.root);
        let same = |ident: &&Ident| syn::ext::IdentExt::unraw(*ident) == wanted;
        if let Some(param) = params.named.iter().find(same) {
            let mut ident = param.clone();
            ident.set_span(span);
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
            return Err(unknown_placeholder(&written, wanted, span, params, fn_name));
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

fn unknown_placeholder(
    written: &str,
    wanted: &str,
    span: Span,
    params: &Params,
    fn_name: &Ident,
) -> syn::Error {
    let mut names: Vec<String> = Vec::new();
    if params.receiver.is_some() {
        names.push("self".to_owned());
    }
    names.extend(
        params
            .named
            .iter()
            .map(|i| syn::ext::IdentExt::unraw(i).to_string()),
    );
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

/// Gives every token of `tokens` the span `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
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

fn duration(d: Duration) -> TokenStream {
    match u64::try_from(d.as_millis()) {
        Ok(millis) if d.subsec_nanos().is_multiple_of(1_000_000) => {
            quote!(::core::time::Duration::from_millis(#millis))
        }
        _ => {
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            quote!(::core::time::Duration::new(#secs, #nanos))
        }
    }
}

/// The return type, for checking it and for typing the body's future.
struct Output {
    /// The type as written, with `impl Trait` replaced by `_`.
    ty: TokenStream,
    /// Where errors about it point: the type's name (`Result` in
    /// `io::Result<u8>`). A single token, because the compiler merges
    /// identical errors only at identical spans, and a span covering several
    /// tokens cannot be made on stable.
    span: Span,
    /// Whether `ty` names the type completely (no `_`), so it can be
    /// checked with `assert_lock_result::<ty>()`.
    complete: bool,
}

impl Output {
    fn new(ty: &Type) -> Output {
        let (ty_tokens, complete) = erase_impl_trait(ty);
        Output {
            ty: ty_tokens,
            span: name_span(ty),
            complete,
        }
    }

    /// The type with every token at `self.span`, for the checks: the
    /// assertion and the `run_locked` call then fail at the same span and
    /// the user sees one error.
    fn checked_ty(&self) -> TokenStream {
        respan(self.ty.clone(), self.span)
    }

    fn of_fn(output: &ReturnType, fn_name: &Ident) -> Output {
        match output {
            ReturnType::Type(_, ty) => Output::new(ty),
            ReturnType::Default => Output {
                ty: quote_spanned!(fn_name.span()=> ()),
                span: fn_name.span(),
                complete: true,
            },
        }
    }
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
fn erase_impl_trait(ty: &Type) -> (TokenStream, bool) {
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

/// `#[async_trait]` moves each argument into its future with `let id = id;`. The key is
/// built from the arguments before that, so an argument used only in the key would leave
/// the rebinding unused and warn. Mark the rebindings the key reads as used, right after
/// them, and leave every other warning to the user.
fn mark_key_bindings_used(block: &syn::Block, key: &TokenStream) -> syn::Block {
    fn rebound(stmt: &syn::Stmt) -> Option<&Ident> {
        let syn::Stmt::Local(local) = stmt else {
            return None;
        };
        let init = local.init.as_ref()?;
        let (syn::Pat::Ident(pat), Expr::Path(_)) = (&local.pat, &*init.expr) else {
            return None;
        };
        Some(&pat.ident)
    }
    fn idents(tokens: TokenStream, out: &mut Vec<String>) {
        for tree in tokens {
            match tree {
                TokenTree::Ident(ident) => out.push(ident.to_string()),
                TokenTree::Group(group) => idents(group.stream(), out),
                _ => {}
            }
        }
    }
    let mut in_key = Vec::new();
    idents(key.clone(), &mut in_key);
    let mut block = block.clone();
    // async-trait's prelude: a typing `if let`, then the rebindings, then
    // `let __ret = { body };`, whose initialiser is not a path.
    let prelude = block
        .stmts
        .iter()
        .position(|s| matches!(s, syn::Stmt::Local(_)) && rebound(s).is_none())
        .unwrap_or(0);
    let touches: Vec<syn::Stmt> = block.stmts[..prelude]
        .iter()
        .filter_map(rebound)
        .filter(|ident| in_key.contains(&ident.to_string()))
        .map(|ident| syn::parse_quote!(let _ = &#ident;))
        .collect();
    block.stmts.splice(prelude..prelude, touches);
    block
}

fn generate(config: &Config, func: LockedFn, shape: Shape, key: &TokenStream) -> TokenStream {
    let LockedFn { head, sig, body } = func;
    let krate = &config.krate;
    // Generated locals live in their own hygiene context: a user parameter
    // or body variable called `spec` or `__lock_spec` cannot see or shadow them.
    let spec = format_ident!("__lock_spec", span = Span::mixed_site());
    let client = format_ident!("__lock_client", span = Span::mixed_site());
    let ret = format_ident!("__lock_ret", span = Span::mixed_site());

    let ttl = duration(config.ttl);
    let wait = match config.wait {
        Some(wait) => {
            let wait = duration(wait);
            quote!(::core::option::Option::Some(#wait))
        }
        None => quote!(::core::option::Option::None),
    };
    let fencing = config.fencing;
    let client_expr = match &config.client {
        Some(expr) => quote!(#krate::__private::client(#expr)),
        None => quote!(#krate::__private::global_client()),
    };

    let output = match &shape {
        Shape::Async => Some(Output::of_fn(&sig.output, &sig.ident)),
        Shape::ReturnsAsyncBlock(tail) => tail.output.as_ref().map(Output::new),
    };
    // The check the runtime's `LockResult` diagnostic hangs on, spanned at
    // the return type so that is where a non-`Result` return is reported.
    let assertion = output.as_ref().filter(|o| o.complete).map(|output| {
        let krate = respan(krate.to_token_stream(), output.span);
        let ty = output.checked_ty();
        quote_spanned! {output.span=>
            #krate::__private::assert_lock_result::<#ty>();
        }
    });
    // Pins the output type of the body's async block before the body is
    // checked, so `?` converts errors into the declared error type.
    let typing = output.as_ref().map(|output| {
        let ty = &output.ty;
        quote! {
            if let ::core::option::Option::Some(#ret) = ::core::option::Option::None::<#ty> {
                return #ret;
            }
        }
    });
    // `run_locked` has the same `LockResult` bound as the assertion. Given
    // the same type, written with the same tokens, the compiler reports a
    // wrong return type once, at the return type, rather than once more at
    // the attribute.
    let call_span = output.as_ref().map_or_else(Span::call_site, |o| o.span);
    let run_locked = {
        let path = respan(quote!(#krate::__private::run_locked), call_span);
        match &output {
            Some(output) if output.complete => {
                let ty = output.checked_ty();
                quote_spanned!(call_span=> #path::<#ty, _>)
            }
            _ => path,
        }
    };
    let locked_call = |future: TokenStream| {
        quote_spanned! {call_span=>
            #run_locked(#client, #spec, #future).await
        }
    };
    let prelude = quote! {
        let #spec = #krate::__private::Spec {
            key: #key,
            ttl: #ttl,
            wait: #wait,
            fencing: #fencing,
        };
        let #client = #client_expr;
        #assertion
    };

    let Body {
        brace,
        inner_attrs,
        stmts,
    } = body;
    let new_body = match shape {
        Shape::Async => {
            let mut user_block = Group::new(Delimiter::Brace, stmts);
            user_block.set_span(brace.span.join());
            let call = locked_call(quote! {
                async move {
                    #typing
                    #user_block
                }
            });
            quote!(#prelude #call)
        }
        Shape::ReturnsAsyncBlock(mut tail) => {
            let slot = tail.async_block_mut();
            let Expr::Async(block) = slot else {
                unreachable!("async_block_mut returns an async block")
            };
            let attrs = &block.attrs;
            let capture = &block.capture;
            let inner = &mark_key_bindings_used(&block.block, key);
            let call = locked_call(quote! {
                async #capture {
                    #typing
                    #inner
                }
            });
            let locked = quote! {
                #(#attrs)* async #capture {
                    #prelude
                    #call
                }
            };
            *slot = Expr::Verbatim(locked);
            let stmts = &tail.stmts;
            quote!(#(#stmts)*)
        }
    };

    quote! {
        #head {
            #(#inner_attrs)*
            #new_body
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_ok(args: TokenStream, item: TokenStream) -> String {
        expand(args, item).unwrap().to_string()
    }

    fn expand_errs(args: TokenStream, item: TokenStream) -> Vec<String> {
        match expand(args, item) {
            Ok(tokens) => panic!("expected errors, got {tokens}"),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn normalized(tokens: TokenStream) -> String {
        tokens.to_string()
    }

    #[test]
    fn template_becomes_format_call() {
        let out = expand_ok(
            quote!(key = "order:{id}:{{x}}", ttl = "10s"),
            quote!(
                async fn settle(id: u64) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        let expected = normalized(quote!(::lock_runtime::__private::format!(
            "order:{}:{{x}}",
            id
        )));
        assert!(out.contains(&expected), "{out}");
        assert!(out.contains("from_millis (10000u64)"), "{out}");
    }

    #[test]
    fn template_without_placeholders_is_a_plain_string() {
        let out = expand_ok(
            quote!(key = "a{{b}}<<c>>"),
            quote!(
                async fn f() {}
            ),
        );
        assert!(out.contains(r#"From :: from ("a{b}<c>")"#), "{out}");
    }

    #[test]
    fn fields_and_self() {
        let out = expand_ok(
            quote!(key = "{self.tenant}:<order.id>:{pair.0}"),
            quote!(
                async fn f(&self, order: &Order, pair: (u8, u8)) {}
            ),
        );
        assert!(
            out.contains("self . tenant , order . id , pair . 0"),
            "{out}"
        );
    }

    #[test]
    fn raw_parameter_names() {
        let out = expand_ok(
            quote!(key = "{type}:{r#type}"),
            quote!(
                async fn f(r#type: u8) {}
            ),
        );
        assert!(out.contains("r#type , r#type"), "{out}");
    }

    #[test]
    fn key_expression_is_formatted() {
        let out = expand_ok(
            quote!(key = format!("batch:{}", ids.len())),
            quote!(
                async fn f(ids: Vec<u64>) {}
            ),
        );
        assert!(
            out.contains(r#"format ! ("{}" , format ! ("batch:{}" , ids . len ()))"#),
            "{out}"
        );
    }

    #[test]
    fn options_reach_the_spec() {
        let out = expand_ok(
            quote!(
                key = "k",
                ttl = "1500us",
                wait = "2s",
                fencing,
                client = self.c.clone(),
                crate = "my::rt"
            ),
            quote!(
                async fn f(&self) {}
            ),
        );
        assert!(out.contains("Duration :: new (0u64 , 1500000u32)"), "{out}");
        assert!(
            out.contains("Some (:: core :: time :: Duration :: from_millis (2000u64))"),
            "{out}"
        );
        assert!(out.contains("fencing : true"), "{out}");
        assert!(
            out.contains("my :: rt :: __private :: client (self . c . clone ())"),
            "{out}"
        );
        assert!(!out.contains("lock_runtime"), "{out}");
    }

    #[test]
    fn signature_and_attributes_are_kept() {
        let out = expand_ok(
            quote!(key = "k"),
            quote!(
                #[doc = "d"]
                pub(crate) async unsafe fn f<T: Send>(t: T) -> Result<T, E>
                where
                    T: Clone,
                {
                    #![allow(unused)]
                    Ok(t)
                }
            ),
        );
        let head = normalized(
            quote!(#[doc = "d"] pub(crate) async unsafe fn f<T: Send>(t: T) -> Result<T, E> where T: Clone,),
        );
        let inner_attr = normalized(quote!(#![allow(unused)]));
        assert!(out.starts_with(&format!("{head} {{ {inner_attr}")), "{out}");
    }

    #[test]
    fn return_type_is_asserted_and_pins_the_body_type() {
        let out = expand_ok(
            quote!(key = "k"),
            quote!(
                async fn f() -> io::Result<u8> {
                    Ok(1)
                }
            ),
        );
        assert!(
            out.contains("assert_lock_result :: < io :: Result < u8 > > ()"),
            "{out}"
        );
        assert!(out.contains("None :: < io :: Result < u8 > >"), "{out}");
    }

    #[test]
    fn impl_trait_in_the_return_type_is_inferred_not_asserted() {
        let out = expand_ok(
            quote!(key = "k"),
            quote!(
                async fn f() -> Result<impl Display + Send, E> {
                    Ok(1)
                }
            ),
        );
        assert!(!out.contains("assert_lock_result"), "{out}");
        assert!(out.contains("None :: < Result < _ , E > >"), "{out}");
    }

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
    fn async_trait_output_gets_the_lock_inside_the_boxed_future() {
        let out = expand_ok(
            quote!(key = "{self.id}"),
            quote! {
                fn f<'life0, 'async_trait>(&'life0 self) -> ::core::pin::Pin<Box<
                    dyn ::core::future::Future<Output = Result<u8, E>> + ::core::marker::Send + 'async_trait
                >> where 'life0: 'async_trait, Self: 'async_trait {
                    Box::pin(async move { let __self = self; Ok(1) })
                }
            },
        );
        let pinned = out
            .find("Box :: pin (async move {")
            .expect("keeps Box::pin");
        let run = out.find("run_locked").unwrap();
        let user = out.find("let __self = self").unwrap();
        assert!(pinned < run && run < user, "{out}");
        assert!(
            out.contains("assert_lock_result :: < Result < u8 , E > >"),
            "{out}"
        );
    }

    #[test]
    fn unknown_placeholder_lists_parameters() {
        let errs = expand_errs(
            quote!(key = "{idd}"),
            quote!(
                async fn settle(&self, id: u64, amount: u64) {}
            ),
        );
        assert_eq!(
            errs,
            [
                "placeholder `{idd}` does not name a parameter of `settle` (did you mean `id`?); \
             the parameters are `self`, `id`, `amount`"
            ]
        );
    }

    #[test]
    fn unknown_placeholder_without_parameters() {
        let errs = expand_errs(
            quote!(key = "<x>"),
            quote!(
                async fn f() {}
            ),
        );
        assert!(
            errs[0].ends_with("`f` has no parameters a key can use"),
            "{errs:?}"
        );
    }

    #[test]
    fn self_without_receiver() {
        let errs = expand_errs(
            quote!(key = "{self.tenant}"),
            quote!(
                async fn f(id: u64) {}
            ),
        );
        assert!(errs[0].contains("`f` has no `self` parameter"), "{errs:?}");
    }

    #[test]
    fn destructured_parameter() {
        let errs = expand_errs(
            quote!(key = "{a}"),
            quote!(
                async fn f((a, b): (u8, u8)) {}
            ),
        );
        assert!(
            errs[0].contains("bound inside a destructuring pattern"),
            "{errs:?}"
        );
    }

    #[test]
    fn every_error_at_once() {
        let errs = expand_errs(
            quote!(key = "{nope}:{self.x}", wait = "2h", colour = "red"),
            quote!(
                fn f(id: u64) {}
            ),
        );
        assert_eq!(errs.len(), 5, "{errs:?}");
    }

    #[test]
    fn missing_key_still_checks_the_function() {
        let errs = expand_errs(
            quote!(ttl = "1s"),
            quote!(
                fn f() {}
            ),
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn errors_keep_the_item() {
        let item = quote!(
            fn f(id: u64) -> u8 {
                1
            }
        );
        let out = distributed_lock(quote!(key = "{id}"), item.clone()).to_string();
        assert!(out.starts_with(&item.to_string()), "{out}");
        assert!(out.contains("compile_error"), "{out}");
    }

    #[test]
    fn non_function_items_are_kept() {
        let item = quote!(
            struct S;
        );
        let out = distributed_lock(quote!(key = "k"), item.clone()).to_string();
        assert!(out.starts_with(&item.to_string()), "{out}");
        assert!(
            out.contains("can only be applied to an `async fn`"),
            "{out}"
        );
    }

    #[test]
    fn generated_locals_are_hygienic() {
        // Users may name parameters like our locals; ours use mixed-site
        // hygiene, so the tokens may match but never resolve to each other.
        let out = expand_ok(
            quote!(key = "{key}:{client}:{guard}:{spec}:{__lock_spec}"),
            quote!(
                async fn f(key: u8, client: u8, guard: u8, spec: u8, __lock_spec: u8) {}
            ),
        );
        assert!(
            out.contains("key , client , guard , spec , __lock_spec"),
            "{out}"
        );
    }
}
