//! Code generation: from the validated arguments, the parsed function and
//! the resolved key to the output. The steps before it, run by `entry`
//! (parse in `attr` and `item`, model in `attr::Config` and `item::Shape`,
//! validate in `resolve`), have recorded every error; nothing here can fail.
//!
//! The expansion stays thin: it builds the key and the options, then hands
//! the body, as a future, to one runtime function:
//!
//! ```text
//! async fn settle(id: u64) -> Result<Receipt, AppError> {   // the user's tokens
//!     // For a literal TTL: the runtime's own limits, checked at compile time.
//!     const _: () = match ::lock_runtime::__private::ttl_problem(..) { .. };
//!     let __lock_spec = ::lock_runtime::__private::Spec::new(
//!         ::lock_runtime::__private::format!("order:{}", id),
//!     )
//!     .ttl(::core::time::Duration::from_millis(10000u64));
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
//! The `__lock_*` locals have mixed-site hygiene. The user's braces around
//! the body are given the expansion's context, so a one-line body does not
//! look like a redundant block to `unused_braces`. For the other shapes, see
//! [`Shape`]: a `fn` returning a future gets the same setup before its
//! statements and its async block passed to `run_locked`; an `#[async_trait]`
//! function gets it inside its async block, after the rebindings.

use std::time::Duration;

use proc_macro2::{Delimiter, Group, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Stmt};

use crate::async_trait;
use crate::attr::{Config, DurationArg, OnBusy};
use crate::item::{Body, LockedFn, Params, Shape};
use crate::output::{Output, respan};
use crate::resolve::{KeyExpr, Scope};

fn duration(d: Duration, span: Span) -> TokenStream {
    match u64::try_from(d.as_millis()) {
        Ok(millis) if d.subsec_nanos().is_multiple_of(1_000_000) => {
            quote_spanned!(span=> ::core::time::Duration::from_millis(#millis))
        }
        _ => {
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            quote_spanned!(span=> ::core::time::Duration::new(#secs, #nanos))
        }
    }
}

/// A literal TTL checked against the runtime's limits at compile time, by
/// the runtime's own `const fn`: an out-of-range TTL fails to build, with
/// the runtime's message, at the literal.
fn ttl_check(krate: &syn::Path, ttl: Duration, span: Span) -> TokenStream {
    let ttl = duration(ttl, span);
    let krate = respan(krate.to_token_stream(), span);
    quote_spanned! {span=>
        const _: () = match #krate::__private::ttl_problem(#ttl) {
            ::core::option::Option::Some(problem) => ::core::panic!("{}", problem),
            ::core::option::Option::None => (),
        };
    }
}

/// What goes before the locked call: the compile-time checks, the spec, the
/// client and the return type assertion.
struct Setup {
    stmts: TokenStream,
    /// `run_locked::<R, _>` or `run_or_skip::<R, _>`.
    run: TokenStream,
    /// Where the call is spanned: the return type.
    call_span: Span,
    /// The statement that fixes the body's output type, if it is known.
    typing: Option<TokenStream>,
}

fn setup(config: &Config, output: Option<&Output>, scope: &Scope, key: &KeyExpr) -> Setup {
    let krate = &config.krate;
    let spec = format_ident!("__lock_spec", span = Span::mixed_site());
    let client = format_ident!("__lock_client", span = Span::mixed_site());
    let ret = format_ident!("__lock_ret", span = Span::mixed_site());

    let mut checks = TokenStream::new();
    let mut options = TokenStream::new();
    for (name, arg) in [
        ("ttl", &config.ttl),
        ("wait", &config.wait),
        ("min_hold", &config.min_hold),
        ("max_hold", &config.max_hold),
    ] {
        let Some(arg) = arg else { continue };
        let method = format_ident!("{name}");
        let (value, span) = match arg {
            DurationArg::Literal { value, lit } => {
                if name == "ttl" {
                    checks.extend(ttl_check(krate, *value, lit.span()));
                }
                (duration(*value, lit.span()), lit.span())
            }
            DurationArg::Expr(expr) => (scope.expr(expr), expr.span()),
        };
        options.extend(quote_spanned!(span=> .#method(#value)));
    }
    if config.fencing {
        options.extend(quote!(.fencing(true)));
    }
    if !config.watchdog {
        options.extend(quote!(.watchdog(false)));
    }
    let key = key.tokens(krate);
    let client_expr = match &config.client {
        // Borrowed, so an owned `LockClient` parameter stays usable in the
        // body; spanned at the expression, so a wrong type is reported there.
        Some(expr) => {
            let value = scope.expr(expr);
            let path = respan(quote!(#krate::__private::client), expr.span());
            quote_spanned!(expr.span()=> #path(&(#value)))
        }
        None => quote!(#krate::__private::global_client()),
    };

    let (assert_fn, run_fn) = match config.on_busy {
        OnBusy::Error => (quote!(assert_lock_result), quote!(run_locked)),
        OnBusy::Skip => (quote!(assert_skip_result), quote!(run_or_skip)),
    };
    // The check the runtime's diagnostics hang on, spanned at the return
    // type so that is where a wrong return type is reported.
    let assertion = output.filter(|o| o.complete).map(|output| {
        let krate = respan(krate.to_token_stream(), output.span);
        let assert_fn = respan(assert_fn.clone(), output.span);
        let ty = output.checked_ty();
        quote_spanned! {output.span=>
            #krate::__private::#assert_fn::<#ty>();
        }
    });
    // Pins the output type of the body's async block before the body is
    // checked, so `?` converts errors into the declared error type.
    let typing = output.map(|output| {
        let ty = &output.ty;
        quote! {
            if let ::core::option::Option::Some(#ret) = ::core::option::Option::None::<#ty> {
                return #ret;
            }
        }
    });
    // The run function has the same bound as the assertion. Given the same
    // type, written with the same tokens, the compiler reports a wrong
    // return type once, at the return type, rather than once more at the
    // attribute.
    let call_span = output.map_or_else(Span::call_site, |o| o.span);
    let run = {
        let path = respan(quote!(#krate::__private::#run_fn), call_span);
        match output {
            Some(output) if output.complete => {
                let ty = output.checked_ty();
                quote_spanned!(call_span=> #path::<#ty, _>)
            }
            _ => path,
        }
    };
    let stmts = quote! {
        #checks
        let #spec = #krate::__private::Spec::new(#key) #options;
        let #client = #client_expr;
        #assertion
    };
    Setup {
        stmts,
        run,
        call_span,
        typing,
    }
}

impl Setup {
    /// `run_locked::<R, _>(__lock_client, __lock_spec, future)`, awaited or
    /// not, all at the return type's span.
    fn call(&self, future: TokenStream, awaited: bool) -> TokenStream {
        let spec = format_ident!("__lock_spec", span = Span::mixed_site());
        let client = format_ident!("__lock_client", span = Span::mixed_site());
        let run = &self.run;
        let call = quote_spanned! {self.call_span=>
            #run(#client, #spec, #future)
        };
        match awaited {
            true => quote_spanned!(self.call_span=> #call.await),
            false => call,
        }
    }
}

/// The function, locked. Every input was validated: this cannot fail.
pub(crate) fn generate(
    config: &Config,
    func: LockedFn,
    shape: Shape,
    params: &Params,
    key: &KeyExpr,
) -> TokenStream {
    let LockedFn { head, sig, body } = func;
    let scope = Scope {
        params,
        fn_name: &sig.ident,
        async_trait: matches!(shape, Shape::AsyncTrait(_)),
    };
    let Body {
        brace,
        inner_attrs,
        stmts,
    } = body;
    let new_body = match shape {
        Shape::Async => {
            let output = Output::of_fn(&sig.output, &sig.ident);
            let setup = setup(config, Some(&output), &scope, key);
            let typing = &setup.typing;
            // The user's own block, so shadowing cannot leak either way. Its
            // braces get the expansion's context (at the same place): with the
            // user's span, a one-line body is the tail of our async block and
            // `unused_braces` would ask to delete the function's braces.
            let mut user_block = Group::new(Delimiter::Brace, stmts);
            user_block.set_span(Span::call_site().located_at(brace.span.join()));
            let call = setup.call(
                quote! {
                    async move {
                        #typing
                        #user_block
                    }
                },
                true,
            );
            let stmts = &setup.stmts;
            quote!(#stmts #call)
        }
        Shape::ReturnsFuture(mut tail) => {
            let output = tail.output.as_ref().map(Output::new);
            let setup = setup(config, output.as_ref(), &scope, key);
            let slot = tail.async_block_mut();
            let Expr::Async(block) = slot else {
                unreachable!("async_block_mut returns an async block")
            };
            let attrs = &block.attrs;
            let capture = &block.capture;
            let typing = &setup.typing;
            let user_stmts = &block.block.stmts;
            let mut inner = Group::new(Delimiter::Brace, quote!(#typing #(#user_stmts)*));
            inner.set_span(block.block.brace_token.span.join());
            let locked = setup.call(quote!(#(#attrs)* async #capture #inner), false);
            *slot = Expr::Verbatim(locked);
            let stmts = &tail.stmts;
            let setup_stmts = &setup.stmts;
            // The setup runs first, while every parameter is still there;
            // the user's statements run when the function is called, as
            // written; the returned future takes the lock.
            quote!(#setup_stmts #(#stmts)*)
        }
        Shape::AsyncTrait(mut tail) => {
            let output = tail.output.as_ref().map(Output::new);
            let setup = setup(config, output.as_ref(), &scope, key);
            let slot = tail.async_block_mut();
            let Expr::Async(block) = slot else {
                unreachable!("async_block_mut returns an async block")
            };
            let async_trait::Split { prelude, rest } = async_trait::split(&block.block);
            let attrs = &block.attrs;
            let capture = &block.capture;
            let typing = &setup.typing;
            let call = setup.call(
                quote! {
                    async move {
                        #typing
                        #(#rest)*
                    }
                },
                true,
            );
            let setup_stmts = &setup.stmts;
            let locked = quote! {
                #(#attrs)* async #capture {
                    #(#prelude)*
                    #setup_stmts
                    #call
                }
            };
            *slot = Expr::Verbatim(locked);
            let stmts: &[Stmt] = &tail.stmts;
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
    use crate::entry::{distributed_lock, expand};

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
        assert!(
            out.contains(". ttl (:: core :: time :: Duration :: from_millis (10000u64))"),
            "{out}"
        );
        assert!(
            out.contains("ttl_problem"),
            "a literal TTL is checked at compile time: {out}"
        );
    }

    #[test]
    fn template_without_placeholders_is_a_plain_string() {
        let out = expand_ok(
            quote!(key = "a{{b}}<<c>>"),
            quote!(
                async fn f() {}
            ),
        );
        assert!(out.contains(r#"Spec :: new ("a{b}<c>")"#), "{out}");
        assert!(!out.contains(". ttl"), "the runtime's default TTL: {out}");
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
                watchdog = false,
                min_hold = "1s",
                max_hold = MAX,
                client = self.c.clone(),
                crate = "my::rt"
            ),
            quote!(
                async fn f(&self) {}
            ),
        );
        assert!(
            out.contains(". ttl (:: core :: time :: Duration :: new (0u64 , 1500000u32))"),
            "{out}"
        );
        assert!(
            out.contains(". wait (:: core :: time :: Duration :: from_millis (2000u64))"),
            "{out}"
        );
        assert!(
            out.contains(". min_hold (:: core :: time :: Duration :: from_millis (1000u64))"),
            "{out}"
        );
        assert!(out.contains(". max_hold (MAX)"), "{out}");
        assert!(out.contains(". fencing (true)"), "{out}");
        assert!(out.contains(". watchdog (false)"), "{out}");
        assert!(
            out.contains("my :: rt :: __private :: client (& (self . c . clone ()))"),
            "{out}"
        );
        assert!(out.contains("run_locked"), "{out}");
        assert!(!out.contains("lock_runtime"), "{out}");
    }

    #[test]
    fn defaults_set_nothing() {
        let out = expand_ok(
            quote!(key = "k"),
            quote!(
                async fn f() {}
            ),
        );
        for option in [". ttl", ". wait", ". fencing", ". watchdog", "_hold"] {
            assert!(!out.contains(option), "{option}: {out}");
        }
        assert!(out.contains("global_client ()"), "{out}");
    }

    #[test]
    fn the_client_is_borrowed() {
        let out = expand_ok(
            quote!(key = "k", client = locks),
            quote!(
                async fn f(locks: LockClient) {}
            ),
        );
        assert!(out.contains("__private :: client (& (locks))"), "{out}");
    }

    #[test]
    fn skip_checks_its_own_return_shapes() {
        let out = expand_ok(
            quote!(key = "k", on_busy = "skip"),
            quote!(
                async fn f() -> Result<Option<u8>, E> {
                    Ok(None)
                }
            ),
        );
        assert!(
            out.contains("assert_skip_result :: < Result < Option < u8 > , E > >"),
            "{out}"
        );
        assert!(out.contains("run_or_skip :: < Result"), "{out}");
        assert!(!out.contains("run_locked"), "{out}");
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
    fn async_trait_output_gets_the_lock_after_the_rebindings() {
        let out = expand_ok(
            quote!(key = "{self.id}:{id}", client = self.locks()),
            quote! {
                fn f<'life0, 'async_trait>(&'life0 self, __arg1: (u8, u8), id: u64) -> ::core::pin::Pin<Box<
                    dyn ::core::future::Future<Output = Result<u8, E>> + ::core::marker::Send + 'async_trait
                >> where 'life0: 'async_trait, Self: 'async_trait {
                    Box::pin(async move {
                        let __self = self;
                        let (a, b) = { let __arg1 = __arg1; __arg1 };
                        let id = id;
                        let __ret: Result<u8, E> = { Ok(1) };
                        __ret
                    })
                }
            },
        );
        let pinned = out
            .find("Box :: pin (async move {")
            .expect("keeps Box::pin");
        let rebinding = out.find("let id = id").unwrap();
        let spec = out.find("let __lock_spec").unwrap();
        let run = out.find("run_locked").unwrap();
        let body = out.find("let __ret").unwrap();
        assert!(
            pinned < rebinding && rebinding < spec && spec < run && run < body,
            "{out}"
        );
        assert!(
            out.contains("format ! (\"{}:{}\" , __self . id , id)"),
            "{out}"
        );
        assert!(out.contains("client (& (__self . locks ()))"), "{out}");
        assert!(
            out.contains("assert_lock_result :: < Result < u8 , E > >"),
            "{out}"
        );
    }

    #[test]
    fn async_trait_destructured_parameters_are_named_as_written() {
        let errs = expand_errs(
            quote!(key = "{b}:{x}"),
            quote! {
                fn f<'async_trait>(__arg0: (u8, u8), id: u64) -> ::core::pin::Pin<Box<
                    dyn ::core::future::Future<Output = Result<u8, E>> + 'async_trait
                >> {
                    Box::pin(async move {
                        let (a, b) = { let __arg0 = __arg0; __arg0 };
                        let id = id;
                        let __ret: Result<u8, E> = { Ok(1) };
                        __ret
                    })
                }
            },
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].contains("bound inside a destructuring pattern"),
            "{errs:?}"
        );
        assert!(errs[1].ends_with("the parameters are `id`"), "{errs:?}");
    }

    #[test]
    fn returned_future_takes_the_setup_first_and_locks_the_async_block() {
        let out = expand_ok(
            quote!(key = "{id}"),
            quote! {
                fn f(id: u64) -> impl Future<Output = Result<u64, E>> + 'static {
                    let copy = id;
                    async move { Ok(copy) }
                }
            },
        );
        let spec = out.find("let __lock_spec").unwrap();
        let user = out.find("let copy = id").unwrap();
        let run = out.find("run_locked").unwrap();
        let block = out.find("async move").unwrap();
        assert!(spec < user && user < run && run < block, "{out}");
        assert!(
            !out.contains(". await"),
            "the future is returned, not awaited: {out}"
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
