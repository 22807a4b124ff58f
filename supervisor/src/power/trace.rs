//! Trace CSV files (`t_s,volts,amps`), PRODUCT.md §4.
