//! Procedural macros for `lock-runtime`. Depend on `lock-runtime`, which re-exports them.
