//! metrics (stub)
