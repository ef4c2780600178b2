//! Compile tests of `#[distributed_lock]`: every `tests/compile_fail/*.rs`
//! must fail with exactly its checked-in `.stderr`, and every
//! `tests/pass/*.rs` must build and run. See the README for updating the
//! expected output.

#[test]
fn compile_tests() {
    // One `TestCases` for both sets, so they build in one cargo invocation
    // instead of two competing for the target directory.
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    t.compile_fail("tests/compile_fail/*.rs");
}
