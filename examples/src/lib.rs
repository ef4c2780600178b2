//! Runnable examples for lock-runtime; see the README.
