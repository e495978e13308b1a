//! Fuzz target `loader`: YAML/JSON bytes → objects → compile → text and JSON (inputs over 64 KiB ignored).
//! The body is `nftpol::kernel::fuzz::loader`, shared with tests/fuzz_smoke.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nftpol::kernel::fuzz::loader(data));
