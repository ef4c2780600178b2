//! The item under the attribute: parsed just enough to keep the signature's
//! own tokens, find the parameters, and locate the code to run locked.

use proc_macro2::{Span, TokenStream};
use syn::buffer::Cursor;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{
    Abi, Attribute, Block, Expr, ExprAsync, FnArg, GenericArgument, Ident, Pat, PathArguments,
    ReturnType, Signature, Stmt, Token, Type, TypeParamBound, Visibility, braced, token,
};

use crate::errors::Errors;

/// A function with a body, as written.
pub(crate) struct LockedFn {
    /// Attributes, visibility and signature: the tokens exactly as written,
    /// re-emitted unchanged, so every span stays where the user put it.
    pub head: TokenStream,
    /// The signature, parsed, for looking at (never re-printed).
    pub sig: Signature,
    pub body: Body,
}

/// A function body, kept as tokens: the compiler, not us, reports what is
/// wrong inside it, and only the `#[async_trait]` case needs it parsed.
pub(crate) struct Body {
    pub brace: token::Brace,
    /// `#![...]` attributes at the top of the body; they stay on the function.
    pub inner_attrs: Vec<Attribute>,
    pub stmts: TokenStream,
}

impl Parse for LockedFn {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let start = input.cursor();
        input.call(Attribute::parse_outer)?;
        input.parse::<Visibility>()?;
        input.parse::<Option<Token![default]>>()?;
        if !peek_signature(input) {
            return Err(syn::Error::new(
                input.span(),
                "#[distributed_lock] can only be applied to an `async fn`",
            ));
        }
        let sig: Signature = input.parse()?;
        let head = tokens_between(start, input.cursor());
        if input.peek(Token![;]) {
            return Err(syn::Error::new(
                sig.ident.span(),
                "#[distributed_lock] needs the function's body: put it on the \
                 implementation, not on the declaration",
            ));
        }
        let content;
        let brace = braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let stmts = content.parse()?;
        Ok(LockedFn {
            head,
            sig,
            body: Body {
                brace,
                inner_attrs,
                stmts,
            },
        })
    }
}

fn tokens_between(mut from: Cursor, to: Cursor) -> TokenStream {
    let mut tokens = TokenStream::new();
    while from < to {
        let Some((tree, next)) = from.token_tree() else {
            break;
        };
        tokens.extend([tree]);
        from = next;
    }
    tokens
}

/// `const`? `async`? `unsafe`? `extern "abi"`? `fn`
fn peek_signature(input: ParseStream) -> bool {
    let fork = input.fork();
    fork.parse::<Option<Token![const]>>().is_ok()
        && fork.parse::<Option<Token![async]>>().is_ok()
        && fork.parse::<Option<Token![unsafe]>>().is_ok()
        && fork.parse::<Option<Abi>>().is_ok()
        && fork.peek(Token![fn])
}

/// How the function produces its future.
pub(crate) enum Shape {
    /// An `async fn`: its body runs under the lock.
    Async,
    /// What `#[async_trait]` turns an `async fn` into before we see it (it
    /// sits on the impl, so it expands first): a plain `fn` with an
    /// `'async_trait` lifetime whose body is `Box::pin(async move { .. })`.
    /// That async block runs under the lock, from just after async-trait's
    /// rebindings of the arguments.
    AsyncTrait(Box<AsyncTail>),
    /// A plain `fn` returning `impl Future` (or a boxed future) whose last
    /// expression is `async { .. }` or `Box::pin(async { .. })`. The
    /// statements before it run when the function is called; the async
    /// block, with its own captures, runs under the lock.
    ReturnsFuture(Box<AsyncTail>),
}

/// The parsed body of a [`Shape::AsyncTrait`] or [`Shape::ReturnsFuture`] function.
pub(crate) struct AsyncTail {
    pub stmts: Vec<Stmt>,
    /// The future's `Output` type, when the return type spells it out.
    pub output: Option<Type>,
}

impl AsyncTail {
    /// The async block to wrap, to look at.
    pub fn async_block(&self) -> &ExprAsync {
        let Some(Stmt::Expr(tail, None)) = self.stmts.last() else {
            unreachable!("checked by Shape::of")
        };
        let block = match tail {
            Expr::Call(call) => call.args.first(),
            other => Some(other),
        };
        match block {
            Some(Expr::Async(block)) => block,
            _ => unreachable!("checked by Shape::of"),
        }
    }

    /// The async block to wrap. It exists: `Shape::of` checked.
    pub fn async_block_mut(&mut self) -> &mut Expr {
        let Some(Stmt::Expr(tail, None)) = self.stmts.last_mut() else {
            unreachable!("checked by Shape::of")
        };
        async_block_in(tail).expect("checked by Shape::of")
    }
}

/// The async block `expr` is or is boxed from.
fn async_block_in(expr: &mut Expr) -> Option<&mut Expr> {
    match expr {
        Expr::Async(_) => Some(expr),
        Expr::Call(call) if call.args.len() == 1 && is_box_pin(&call.func) => {
            match call.args.first_mut() {
                Some(arg @ Expr::Async(_)) => Some(arg),
                _ => None,
            }
        }
        _ => None,
    }
}

fn is_box_pin(func: &Expr) -> bool {
    let Expr::Path(path) = func else {
        return false;
    };
    let names: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    names.ends_with(&["Box".to_owned(), "pin".to_owned()])
}

impl Shape {
    /// Classifies `func`, recording why it cannot be locked if it cannot.
    pub fn of(func: &LockedFn, errors: &mut Errors) -> Option<Shape> {
        let sig = &func.sig;
        if let Some(constness) = sig.constness {
            errors.at(
                constness.span,
                "#[distributed_lock] cannot be applied to a `const fn`: taking a lock is a \
                 run-time effect",
            );
            return None;
        }
        if sig.asyncness.is_some() {
            return Some(Shape::Async);
        }
        if let Some(tail) = returns_async_block(func) {
            return Some(if is_async_trait_output(sig) {
                Shape::AsyncTrait(Box::new(tail))
            } else {
                Shape::ReturnsFuture(Box::new(tail))
            });
        }
        errors.at(
            sig.fn_token.span,
            "the `async` keyword is missing from the function declaration; \
             #[distributed_lock] takes an `async fn`, or a `fn` returning a future whose \
             last expression is `async { .. }` or `Box::pin(async { .. })`",
        );
        None
    }
}

/// async-trait always adds an `'async_trait` lifetime to the signature.
fn is_async_trait_output(sig: &Signature) -> bool {
    sig.generics
        .lifetimes()
        .any(|param| param.lifetime.ident == "async_trait")
}

fn returns_async_block(func: &LockedFn) -> Option<AsyncTail> {
    let mut stmts =
        syn::parse::Parser::parse2(Block::parse_within, func.body.stmts.clone()).ok()?;
    let Some(Stmt::Expr(tail, None)) = stmts.last_mut() else {
        return None;
    };
    async_block_in(tail)?;
    let output = match &func.sig.output {
        ReturnType::Type(_, ty) => future_output(ty).cloned(),
        ReturnType::Default => None,
    };
    Some(AsyncTail { stmts, output })
}

/// Finds `R` in `impl Future<Output = R>`, `Pin<Box<dyn Future<Output = R> + Send>>` and the like.
fn future_output(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Paren(t) => future_output(&t.elem),
        Type::Group(t) => future_output(&t.elem),
        Type::ImplTrait(t) => bounds_output(&t.bounds),
        Type::TraitObject(t) => bounds_output(&t.bounds),
        Type::Path(t) => t.path.segments.iter().find_map(|segment| {
            let PathArguments::AngleBracketed(args) = &segment.arguments else {
                return None;
            };
            args.args.iter().find_map(|arg| match arg {
                GenericArgument::Type(t) => future_output(t),
                GenericArgument::AssocType(assoc)
                    if segment.ident == "Future" && assoc.ident == "Output" =>
                {
                    Some(&assoc.ty)
                }
                _ => None,
            })
        }),
        _ => None,
    }
}

fn bounds_output(bounds: &Punctuated<TypeParamBound, Token![+]>) -> Option<&Type> {
    bounds.iter().find_map(|bound| match bound {
        TypeParamBound::Trait(t) => t.path.segments.last().and_then(|segment| {
            let PathArguments::AngleBracketed(args) = &segment.arguments else {
                return None;
            };
            args.args.iter().find_map(|arg| match arg {
                GenericArgument::AssocType(assoc)
                    if segment.ident == "Future" && assoc.ident == "Output" =>
                {
                    Some(&assoc.ty)
                }
                _ => None,
            })
        }),
        _ => None,
    })
}

/// The names a key template can refer to.
pub(crate) struct Params {
    /// The `self` token, for a method.
    pub receiver: Option<Span>,
    /// Parameters bound to a plain name (`id: u64`, `mut ids: Vec<u64>`).
    pub named: Vec<Ident>,
    /// Names bound inside a destructuring pattern (`(a, b): (u8, u8)`).
    pub destructured: Vec<Ident>,
}

impl Params {
    pub fn of(sig: &Signature) -> Params {
        let mut params = Params {
            receiver: None,
            named: Vec::new(),
            destructured: Vec::new(),
        };
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => params.receiver = Some(receiver.self_token.span),
                FnArg::Typed(typed) => match &*typed.pat {
                    Pat::Ident(pat) => {
                        params.named.push(pat.ident.clone());
                        if let Some((_, sub)) = &pat.subpat {
                            params.collect_destructured(sub);
                        }
                    }
                    pat => params.collect_destructured(pat),
                },
            }
        }
        params
    }

    pub(crate) fn collect_destructured(&mut self, pat: &Pat) {
        struct Bindings<'a>(&'a mut Vec<Ident>);
        impl<'ast> Visit<'ast> for Bindings<'_> {
            fn visit_pat_ident(&mut self, pat: &'ast syn::PatIdent) {
                self.0.push(pat.ident.clone());
                syn::visit::visit_pat_ident(self, pat);
            }
        }
        Bindings(&mut self.destructured).visit_pat(pat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(tokens: TokenStream) -> syn::Result<LockedFn> {
        syn::parse2(tokens)
    }

    fn shape(tokens: TokenStream) -> Result<Shape, String> {
        let func = parse(tokens).map_err(|e| e.to_string())?;
        let mut errors = Errors::default();
        let shape = Shape::of(&func, &mut errors);
        errors.finish().map_err(|e| e.to_string())?;
        Ok(shape.unwrap())
    }

    fn names(idents: &[Ident]) -> Vec<String> {
        idents.iter().map(Ident::to_string).collect()
    }

    #[test]
    fn parses_every_kind_of_fn() {
        for item in [
            quote!(
                async fn f() {}
            ),
            quote!(
                pub(crate) async fn f(&self) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                #[inline]
                pub async unsafe fn f<T: Send>(t: T)
                where
                    T: Clone,
                {
                }
            ),
            quote!(default async fn f(self: Arc<Self>) {}),
            quote!(
                async fn f(x: impl Display) {}
            ),
        ] {
            assert!(parse(item.clone()).is_ok(), "{item}");
        }
    }

    #[test]
    fn inner_attributes_are_separated_from_the_body() {
        let func = parse(quote!(
            async fn f() {
                #![allow(unused)]
                let x = 1;
            }
        ))
        .unwrap();
        assert_eq!(func.body.inner_attrs.len(), 1);
        assert_eq!(func.body.stmts.to_string(), quote!(let x = 1;).to_string());
    }

    #[test]
    fn rejects_non_functions() {
        for item in [
            quote!(
                struct S;
            ),
            quote!(
                pub enum E {}
            ),
            quote!(impl S {}),
            quote!(
                static X: u8 = 0;
            ),
        ] {
            let err = parse(item.clone()).err().unwrap().to_string();
            assert!(
                err.contains("can only be applied to an `async fn`"),
                "{item}: {err}"
            );
        }
    }

    #[test]
    fn rejects_declarations_without_body() {
        let err = parse(quote!(
            async fn f(&self) -> u8;
        ))
        .err()
        .unwrap();
        assert!(err.to_string().contains("needs the function's body"));
    }

    #[test]
    fn async_fn_shape() {
        assert!(matches!(
            shape(quote!(
                async fn f() {}
            )),
            Ok(Shape::Async)
        ));
    }

    #[test]
    fn missing_async() {
        let err = shape(quote!(
            fn f() -> Result<(), E> {
                Ok(())
            }
        ))
        .err()
        .unwrap();
        assert!(
            err.starts_with("the `async` keyword is missing from the function declaration;"),
            "{err}"
        );
        assert!(err.contains("`Box::pin(async { .. })`"), "{err}");
    }

    #[test]
    fn const_fn() {
        let err = shape(quote!(
            const fn f() {}
        ))
        .err()
        .unwrap();
        assert!(err.contains("`const fn`"), "{err}");
    }

    #[test]
    fn async_trait_output_is_recognized() {
        let Ok(Shape::AsyncTrait(tail)) = shape(quote! {
            fn f<'life0, 'async_trait>(&'life0 self) -> ::core::pin::Pin<Box<
                dyn ::core::future::Future<Output = Result<u8, E>> + ::core::marker::Send + 'async_trait
            >> where 'life0: 'async_trait, Self: 'async_trait {
                Box::pin(async move { let __self = self; Ok(1) })
            }
        }) else {
            panic!("not recognized")
        };
        let output = tail.output.unwrap();
        assert_eq!(
            quote!(#output).to_string(),
            quote!(Result<u8, E>).to_string()
        );
    }

    #[test]
    fn returned_async_block_is_recognized() {
        let Ok(Shape::ReturnsFuture(mut tail)) = shape(quote! {
            fn f(id: u64) -> impl Future<Output = Result<(), E>> + Send {
                let x = id;
                async move { Ok(()) }
            }
        }) else {
            panic!("not recognized")
        };
        assert!(tail.output.is_some());
        assert!(matches!(
            tail.async_block_mut(),
            Expr::Async(ExprAsync { .. })
        ));
    }

    #[test]
    fn other_tails_are_not_async() {
        for item in [
            quote!(
                fn f() -> Pin<Box<dyn Future<Output = ()>>> {
                    Box::pin(g())
                }
            ),
            quote!(
                fn f() -> impl Future<Output = ()> {
                    async {};
                }
            ),
            quote!(
                fn f() -> Pin<Box<dyn Future<Output = ()>>> {
                    Rc::pin(async {})
                }
            ),
        ] {
            assert!(shape(item.clone()).is_err(), "{item}");
        }
    }

    #[test]
    fn params_by_kind() {
        let func = parse(quote!(
            async fn f(
                &self,
                id: u64,
                mut ids: Vec<u64>,
                (a, b): (u8, u8),
                Point { x, y: why }: Point,
                all @ (c, _): (u8, u8),
                _: u8,
            ) {
            }
        ))
        .unwrap();
        let params = Params::of(&func.sig);
        assert!(params.receiver.is_some());
        assert_eq!(names(&params.named), ["id", "ids", "all"]);
        assert_eq!(names(&params.destructured), ["a", "b", "x", "why", "c"]);
    }

    #[test]
    fn free_fn_has_no_receiver() {
        let func = parse(quote!(
            async fn f(id: u64) {}
        ))
        .unwrap();
        assert!(Params::of(&func.sig).receiver.is_none());
    }
}
