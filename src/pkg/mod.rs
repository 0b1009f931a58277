//! The .pkg writer and reader. (being written)
