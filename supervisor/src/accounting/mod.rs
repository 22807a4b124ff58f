//! Energy accounting (PRODUCT.md §5): who made the Matrix server work, and what it cost. Pure.

pub mod accesslog;
