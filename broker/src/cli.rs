//! (being written: config/CLI work)
