//! Fuzz target `nflog`: bytes as an NFLOG datagram (and as an IP packet).
//! The body is `nftpol::kernel::fuzz::nflog`, shared with tests/fuzz_smoke.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nftpol::kernel::fuzz::nflog(data));
