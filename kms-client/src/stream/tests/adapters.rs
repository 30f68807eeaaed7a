//! The tokio adapters agree with the std ones.
