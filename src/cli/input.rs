//! What the manifest-reading commands share: loading inputs, reporting
//! diagnostics, writing stdout.

use std::io::Write;

use super::Failure;
use super::args::{ClusterInputArgs, InputArgs};
use crate::core::compile::{Compiled, DropLog, NewPods, Options};
use crate::core::diag::Diagnostic;
use crate::core::lint::LintOptions;
use crate::core::model::Cluster;

/// Prints diagnostics on stderr, one a line.
pub fn report(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
}

/// Whether any diagnostic is an error.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

/// Reads and compiles the inputs of `compile` and `apply`. Fails when
/// something could not be read: compiling the rest could silently drop a
/// policy and widen access, so nothing is produced. Otherwise the output
/// carries its diagnostics (already reported).
/// With `lint`, the lints' warnings follow the compiler's diagnostics.
pub fn load_and_compile(
    input: &InputArgs,
    drop_log: DropLog,
    new_pods: NewPods,
    revoke_established: bool,
    lint: Option<&LintOptions>,
) -> Result<Compiled, Failure> {
    let (objs, load_diags) =
        crate::core::k8s::load_paths_with(&input.files, input.unknown_fields());
    report(&load_diags);
    if has_errors(&load_diags) {
        return Err(Failure::invalid("input has errors; no ruleset produced"));
    }
    let opts = Options {
        node: input.node.clone(),
        drop_log,
        new_pods,
        revoke_established,
    };
    let out = match lint {
        Some(l) => crate::core::compile::compile_and_lint(&objs, &opts, l),
        None => crate::core::compile::compile_objects(&objs, &opts),
    };
    report(&out.diagnostics);
    Ok(out)
}

/// Loads and converts inputs for `explain`/`graph`. Fails when the input
/// could not be read (then nothing is answered, as `compile` produces
/// nothing); otherwise the cluster and whether conversion found errors
/// (invalid policies fail closed, and the answer says so).
/// With `lint`, the lints' warnings are reported after the conversion's.
pub fn load_cluster(
    input: &ClusterInputArgs,
    lint: Option<&LintOptions>,
) -> Result<(Cluster, bool), Failure> {
    let (objs, load_diags) =
        crate::core::k8s::load_paths_with(&input.files, input.unknown_fields());
    report(&load_diags);
    if has_errors(&load_diags) {
        return Err(Failure::invalid(
            "input has errors; nothing can be answered (an unread policy could change the answer)",
        ));
    }
    let (cluster, diags) = crate::core::k8s::to_cluster(&objs);
    report(&diags);
    if let Some(l) = lint {
        let graph = crate::core::graph::SelectorGraph::build(&cluster);
        let input = crate::core::k8s::lint_input(&objs);
        report(&crate::core::lint::lint(&cluster, &graph, &input, l));
    }
    Ok((cluster, has_errors(&diags)))
}

/// Writes to stdout; a closed pipe (`| head`) is the reader's choice, not a
/// failure.
pub fn print_stdout(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::internal(format!("cannot write stdout: {e}"))),
    }
}

/// Writes a command's output to `--output-file` when given, else stdout.
pub fn write_output(text: &str, file: Option<&std::path::Path>) -> Result<(), Failure> {
    match file {
        Some(path) => std::fs::write(path, text.as_bytes())
            .map_err(|e| Failure::internal(format!("cannot write {}: {e}", path.display()))),
        None => print_stdout(text),
    }
}

/// Prints a deprecation warning on stderr (the command still runs).
pub fn deprecated(message: &str) {
    let _ = writeln!(std::io::stderr(), "nftpol: warning: {message}");
}
