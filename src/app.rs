//! app (stub)
