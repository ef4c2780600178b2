//! lock-runtime
