//! See benches/throughput.rs.
