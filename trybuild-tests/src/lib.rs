//! Compile tests of `#[distributed_lock]` live in `tests/`: see the README.
