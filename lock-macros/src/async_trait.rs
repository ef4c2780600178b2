//! Functions `#[async_trait]` rewrote before we saw them.
//!
//! async-trait (0.1) turns `async fn f(&self, (a, b): (u8, u8), id: u64) -> R`
//! into a plain `fn` whose body is
//!
//! ```text
//! Box::pin(async move {
//!     if let Some(__ret) = None::<R> { return __ret; }   // fixes the type
//!     let __self = self;                                  // the rebindings
//!     let (a, b) = { let __arg1 = __arg1; __arg1 };
//!     let id = id;
//!     let __ret: R = { /* the body, `self` renamed `__self` */ };
//!     __ret
//! })
//! ```
//!
//! As tracing-attributes does, the lock's setup goes right after the
//! rebindings: the key and the client then read the same variables the body
//! does, so no rebinding is left unused because only the key used it, and no
//! name matching is needed. In the key and client expressions `self` is
//! renamed `__self`, as async-trait renamed it in the body.

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use syn::{Block, Expr, Pat, Stmt};

use crate::item::Params;

/// async-trait's block split after its rebindings.
pub(crate) struct Split {
    /// The typing `if let` and the rebindings.
    pub prelude: Vec<Stmt>,
    /// The rest: `let __ret: R = { body }; __ret`.
    pub rest: Vec<Stmt>,
}

/// Splits async-trait's async block after its rebindings.
pub(crate) fn split(block: &Block) -> Split {
    let mut stmts = block.stmts.iter();
    let mut prelude = Vec::new();
    let mut rest = Vec::new();
    let mut in_prelude = true;
    for stmt in &mut stmts {
        if in_prelude && ((prelude.is_empty() && is_typing(stmt)) || rebinding(stmt).is_some()) {
            prelude.push(stmt.clone());
        } else {
            in_prelude = false;
            rest.push(stmt.clone());
        }
    }
    Split { prelude, rest }
}

/// `if let Some(__ret) = None::<R> { return __ret; }`
fn is_typing(stmt: &Stmt) -> bool {
    matches!(stmt, Stmt::Expr(Expr::If(expr_if), None) if matches!(*expr_if.cond, Expr::Let(_)))
}

/// A rebinding: `let x = x;`, `let __self = self;`, or for a destructured
/// parameter `let PAT = { let __argN = __argN; __argN };`. Returns the
/// pattern and, for a positional argument, its `__argN` name.
fn rebinding(stmt: &Stmt) -> Option<(&Pat, Option<&Ident>)> {
    let Stmt::Local(local) = stmt else {
        return None;
    };
    let init = local.init.as_ref()?;
    if init.diverge.is_some() {
        return None;
    }
    match (&local.pat, &*init.expr) {
        // `let x = x;`, `let __self = self;`, `let __arg1 = __arg1;` (for `_`)
        (Pat::Ident(pat), Expr::Path(path)) if path.path.get_ident().is_some() => {
            let name = pat.ident.to_string();
            let positional = name.starts_with("__arg").then_some(&pat.ident);
            Some((&local.pat, positional))
        }
        // `let (a, b) = { let __arg1 = __arg1; __arg1 };`
        (pat, Expr::Block(block)) if block.block.stmts.len() == 2 => {
            let Stmt::Expr(Expr::Path(tail), None) = &block.block.stmts[1] else {
                return None;
            };
            let arg = tail.path.get_ident()?;
            arg.to_string()
                .starts_with("__arg")
                .then_some((pat, Some(arg)))
        }
        _ => None,
    }
}

/// Puts back the parameters async-trait hid: `__argN` stands for a
/// destructuring pattern (or `_`) the user wrote, so its bindings count as
/// destructured and `__argN` is not offered as a name.
pub(crate) fn restore_params(params: &mut Params, prelude: &[Stmt]) {
    for (pat, positional) in prelude.iter().filter_map(rebinding) {
        let Some(arg) = positional else { continue };
        params.named.retain(|named| named != arg);
        if !matches!(pat, Pat::Ident(p) if p.ident == *arg) {
            params.collect_destructured(pat);
        }
    }
}

/// Renames `self` to `__self` in an expression from the attribute, with
/// the receiver's hygiene (async-trait made `__self` with the span of the
/// `self` token) at the expression's position.
pub(crate) fn replace_self(tokens: TokenStream, receiver: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Ident(ident) if ident == "self" => {
                TokenTree::Ident(Ident::new("__self", receiver.located_at(ident.span())))
            }
            TokenTree::Group(group) => {
                let mut new = Group::new(group.delimiter(), replace_self(group.stream(), receiver));
                new.set_span(group.span());
                TokenTree::Group(new)
            }
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn block(tokens: TokenStream) -> Block {
        syn::parse2(tokens).unwrap()
    }

    fn strings(stmts: &[Stmt]) -> Vec<String> {
        stmts.iter().map(|s| quote!(#s).to_string()).collect()
    }

    #[test]
    fn splits_after_every_kind_of_rebinding() {
        let split = split(&block(quote!({
            if let ::core::option::Option::Some(__ret) = ::core::option::Option::None::<R> {
                return __ret;
            }
            let __self = self;
            let (a, b) = {
                let __arg1 = __arg1;
                __arg1
            };
            let id = id;
            let __arg3 = __arg3;
            let __ret: R = { Ok(id) };
            __ret
        })));
        assert_eq!(split.prelude.len(), 5, "{:?}", strings(&split.prelude));
        assert_eq!(
            strings(&split.rest),
            [
                quote!(let __ret: R = { Ok(id) };).to_string(),
                quote!(__ret).to_string()
            ]
        );
    }

    #[test]
    fn unit_functions_have_no_typing_statement() {
        let split = split(&block(quote!({
            let __self = self;
            let _: () = {};
        })));
        assert_eq!(split.prelude.len(), 1);
        assert_eq!(split.rest.len(), 1);
    }

    #[test]
    fn destructured_parameters_are_restored() {
        let sig: syn::Signature = syn::parse_quote!(
            fn f(&self, __arg1: (u8, u8), id: u64, __arg3: u8)
        );
        let mut params = Params::of(&sig);
        let split = split(&block(quote!({
            let __self = self;
            let (a, b) = {
                let __arg1 = __arg1;
                __arg1
            };
            let id = id;
            let __arg3 = __arg3;
            let __ret: R = {};
            __ret
        })));
        restore_params(&mut params, &split.prelude);
        let names = |idents: &[Ident]| idents.iter().map(Ident::to_string).collect::<Vec<_>>();
        assert_eq!(names(&params.named), ["id"]);
        assert_eq!(names(&params.destructured), ["a", "b"]);
    }

    #[test]
    fn self_becomes_dunder_self() {
        let out = replace_self(quote!(&self.locks(self.x, Self::y)), Span::call_site());
        assert_eq!(
            out.to_string(),
            quote!(&__self.locks(__self.x, Self::y)).to_string()
        );
    }
}
