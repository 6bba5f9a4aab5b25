//! Pure-Rust core of the gaesup state manager (being built).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
