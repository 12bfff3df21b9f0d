//! rdb (stub)
