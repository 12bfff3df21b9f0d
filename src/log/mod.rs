//! log (stub)
