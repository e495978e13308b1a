//! The command line: `args` holds the clap structs, one module per command
//! body, and [`main`] reports a command's failure and maps it to the exit
//! code in one place.

pub mod apply;
pub mod args;
pub mod compile;
pub mod crd;
pub mod diff;
pub mod explain;
pub mod graph;
pub mod input;
pub mod manual;
pub mod run;
pub mod stats;
pub mod status;
pub mod version;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use args::{
    ApplyArgs, Cli, ClusterInputArgs, Command, CompileArgs, CompletionArgs, CrdArgs, CrdName,
    DiffArgs, DropLogArgs, ExpectVerdict, ExplainArgs, ExplainOutput, FailOn, FamilyArg, Format,
    GraphArgs, GraphFormat, InputArgs, ManArgs, RunArgs, StatusArgs, TextOrJson, UninstallArgs,
    VersionArgs,
};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: invalid input or a failed check.
pub const EXIT_INVALID: u8 = 1;
/// Exit code: nftpol itself failed (IO, nft missing, ...).
pub const EXIT_FAILURE: u8 = 2;

/// Why a command did not succeed. The message, when there is one, is
/// printed by [`main`] as `nftpol: MESSAGE`; `None` means the reason was
/// already reported (diagnostics on stderr, or the agent's log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Invalid input, a usage error or a failed check: exit 1.
    Invalid(Option<String>),
    /// nftpol itself failed: exit 2.
    Internal(Option<String>),
}

impl Failure {
    /// Invalid input, with the message to print.
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::Invalid(Some(message.into()))
    }

    /// nftpol failed, with the message to print.
    pub fn internal(message: impl Into<String>) -> Self {
        Failure::Internal(Some(message.into()))
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Invalid(_) => EXIT_INVALID,
            Failure::Internal(_) => EXIT_FAILURE,
        }
    }
}

/// What a command body returns.
pub type Outcome = Result<(), Failure>;

/// Runs the CLI and returns the process exit code. clap prints usage
/// errors, `--help` and `--version`; a usage error exits 1 (invalid input,
/// not clap's 2, which nftpol keeps for its own failures).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(usage_exit_code(&e));
        }
    };
    let outcome = match cli.command {
        Command::Compile(a) => compile::compile(&a),
        Command::Apply(a) => apply::apply(&a),
        Command::Uninstall(a) => apply::uninstall(&a),
        Command::Run(a) => run::run(a),
        Command::Explain(a) => explain::explain(&a),
        Command::Graph(a) => graph::graph(&a),
        Command::Diff(a) => diff::diff(&a),
        Command::Status(a) => status::status(&a),
        Command::Version(a) => version::version(&a),
        Command::Completion(a) => manual::completion(&a),
        Command::Man(a) => manual::man(&a),
        Command::Crd(a) => crd::crd(&a),
    };
    ExitCode::from(exit_code(outcome))
}

/// The exit code of a command line clap did not accept: 0 for `--help` and
/// `--version` (printed on stdout), 1 for every usage error.
pub fn usage_exit_code(e: &clap::Error) -> u8 {
    if e.use_stderr() {
        EXIT_INVALID
    } else {
        EXIT_OK
    }
}

/// Reports a failure on stderr and maps an outcome to its exit code.
fn exit_code(outcome: Outcome) -> u8 {
    match outcome {
        Ok(()) => EXIT_OK,
        Err(f) => {
            if let Failure::Invalid(Some(m)) | Failure::Internal(Some(m)) = &f {
                let _ = writeln!(std::io::stderr(), "nftpol: {m}");
            }
            f.exit_code()
        }
    }
}
