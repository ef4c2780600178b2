//! The pipeline, as in thiserror and serde: parse, model, validate, then
//! generate. Every step records its errors and the later steps still run on
//! what is usable, so one build shows every problem.

use proc_macro2::TokenStream;

use crate::async_trait;
use crate::attr::{Args, Config};
use crate::errors::Errors;
use crate::expand;
use crate::item::{LockedFn, Params, Shape};
use crate::resolve::{self, Scope};

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

/// Parse, model, validate, then generate.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
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
    // The placeholders are checked even when the function's shape is wrong,
    // so both problems show in one build.
    let params = func.as_ref().map(|func| {
        let mut params = Params::of(&func.sig);
        if let Some(Shape::AsyncTrait(tail)) = &shape {
            let split = async_trait::split(&tail.async_block().block);
            async_trait::restore_params(&mut params, &split.prelude);
        }
        params
    });
    let key = match (&config, &func, &params) {
        (Some(config), Some(func), Some(params)) => {
            let scope = Scope {
                params,
                fn_name: &func.sig.ident,
                async_trait: matches!(shape, Some(Shape::AsyncTrait(_))),
            };
            config
                .key
                .as_ref()
                .and_then(|key| resolve::key(key, &scope, &mut errors))
        }
        _ => None,
    };
    errors.finish()?;
    match (config, func, shape, params, key) {
        (Some(config), Some(func), Some(shape), Some(params), Some(key)) => {
            Ok(expand::generate(&config, func, shape, &params, &key))
        }
        _ => unreachable!("every missing piece recorded an error"),
    }
}
