//! upstream (stub)
