//! The `nftpol` binary: everything lives in the library; see `nftpol::cli`.

fn main() -> std::process::ExitCode {
    nftpol::cli::main()
}
