//! The `nftpol` binary: everything lives in the library; see `nftpol::cli`.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    nftpol::cli::main()
}
