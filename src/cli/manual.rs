//! `nftpol completion SHELL` and `nftpol man`: generated from the same clap
//! definitions as the parser, so they never drift from the flags.

use std::path::Path;

use clap::CommandFactory;

use super::args::{Cli, CompletionArgs, ManArgs};
use super::input::print_stdout;
use super::{Failure, Outcome};

/// Prints the completion script for a shell.
pub fn completion(a: &CompletionArgs) -> Outcome {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "nftpol", &mut out);
    let text = String::from_utf8(out)
        .map_err(|e| Failure::internal(format!("completion script is not UTF-8: {e}")))?;
    print_stdout(&text)
}

/// Prints nftpol(1), or writes nftpol.1 and nftpol-COMMAND.1 for every
/// visible command into `--output-dir`.
pub fn man(a: &ManArgs) -> Outcome {
    let cmd = Cli::command();
    match &a.output_dir {
        None => print_stdout(&render(&cmd)?),
        Some(dir) => write_pages(&cmd, dir),
    }
}

fn render(cmd: &clap::Command) -> Result<String, Failure> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .map_err(|e| Failure::internal(format!("cannot render the man page: {e}")))?;
    String::from_utf8(out).map_err(|e| Failure::internal(format!("man page is not UTF-8: {e}")))
}

fn write_pages(cmd: &clap::Command, dir: &Path) -> Outcome {
    let fail =
        |e: std::io::Error| Failure::internal(format!("cannot write {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    clap_mangen::generate_to(cmd.clone(), dir).map_err(fail)
}
