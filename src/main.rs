//! The `georelay` binary: CLI parsing, then hands over to the library.
fn main() {}
