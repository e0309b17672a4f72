//! The msec stack on a bare hyper 1 `service_fn` (being written).
fn main() {}
