//! Collecting errors, so one build shows every problem with an attribute,
//! in the order they appear in the source.

use std::fmt::Display;

use proc_macro2::Span;

/// An accumulator of `syn::Error`s. [`finish`](Errors::finish) sorts them
/// by position and merges them with [`syn::Error::combine`].
#[derive(Default)]
pub(crate) struct Errors(Vec<(Span, syn::Error)>);

impl Errors {
    /// Adds an error, ordered by where it points.
    pub fn push(&mut self, error: syn::Error) {
        // One entry per message: a combined error keeps its own order.
        for single in error {
            self.0.push((single.span(), single));
        }
    }

    /// Adds an error at `span`.
    pub fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Adds an error at `span` followed by a note at `note_span`, kept
    /// together (ordered by `span`), since the compiler cannot attach a real
    /// note to a macro's error.
    pub fn with_note(
        &mut self,
        span: Span,
        message: impl Display,
        note_span: Span,
        note: impl Display,
    ) {
        let mut error = syn::Error::new(span, message);
        error.combine(syn::Error::new(note_span, note));
        self.0.push((span, error));
    }

    /// `Err` with everything collected, in source order, or `Ok` if nothing was.
    pub fn finish(self) -> syn::Result<()> {
        let mut all = self.0;
        // Stable: errors at the same place keep the order they were found in.
        all.sort_by_key(|(span, _)| {
            let start = span.start();
            (start.line, start.column)
        });
        let mut errors = all.into_iter().map(|(_, e)| e);
        let Some(mut first) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            first.combine(error);
        }
        Err(first)
    }
}

/// A " (did you mean `x`?)" suffix when one candidate is a likely typo of
/// `name`, or an empty string.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    let best = candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|&(d, c)| d <= (c.chars().count().max(name.chars().count()) / 3).max(1))
        .min_by_key(|&(d, _)| d);
    match best {
        Some((_, c)) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// `` `a`, `b`, `c` `` for messages.
pub(crate) fn list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errors: Errors) -> Vec<String> {
        errors
            .finish()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("ttl", "ttl"), 0);
        assert_eq!(edit_distance("tll", "ttl"), 1);
        assert_eq!(edit_distance("", "key"), 3);
        assert_eq!(edit_distance("größe", "grösse"), 2);
    }

    #[test]
    fn suggests_close_names_only() {
        let names = ["key", "ttl", "wait", "client"];
        assert_eq!(did_you_mean("tll", names), " (did you mean `ttl`?)");
        assert_eq!(did_you_mean("clinet", names), " (did you mean `client`?)");
        assert_eq!(did_you_mean("timeout", names), "");
    }

    #[test]
    fn errors_at_the_same_place_keep_their_order() {
        let mut errors = Errors::default();
        assert!(Errors::default().finish().is_ok());
        errors.at(Span::call_site(), "first");
        errors.at(Span::call_site(), "second");
        assert_eq!(messages(errors), ["first", "second"]);
    }

    #[test]
    fn errors_come_out_in_source_order() {
        let tokens: proc_macro2::TokenStream = "a\nb\nc".parse().unwrap();
        let spans: Vec<Span> = tokens.into_iter().map(|t| t.span()).collect();
        let mut errors = Errors::default();
        errors.at(spans[2], "c");
        errors.at(spans[0], "a");
        errors.with_note(spans[1], "b", spans[0], "note on a");
        assert_eq!(messages(errors), ["a", "b", "note on a", "c"]);
    }

    #[test]
    fn lists_are_backticked() {
        assert_eq!(list(["a", "b"]), "`a`, `b`");
    }
}
