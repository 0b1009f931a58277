//! (being written: core protocol work)
