//! Fuzz target `listing`: bytes as `nft -j list table` output.
//! The body is `nftpol::kernel::fuzz::listing`, shared with tests/fuzz_smoke.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nftpol::kernel::fuzz::listing(data));
