//! resp (stub)
