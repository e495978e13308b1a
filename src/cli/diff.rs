//! `nftpol diff`: what a change to the manifests does to connectivity and
//! to each node's ruleset, with a CI gate (`--fail-on`).

use super::args::{ClusterInputArgs, DiffArgs, FailOn, TextOrJson};
use super::input::{load_cluster, write_output};
use super::{Failure, Outcome};
use crate::core::compile::Options;
use crate::core::diff::DiffOptions;

/// Loads both trees, compares them and prints the report. Exit 1 when
/// either tree has errors (unreadable input prints nothing; invalid
/// policies fail closed, and the report includes that) or when the
/// `--fail-on` gate trips.
pub fn diff(a: &DiffArgs) -> Outcome {
    let tree = |files: &[std::path::PathBuf]| {
        load_cluster(
            &ClusterInputArgs {
                files: files.to_vec(),
                lenient: a.lenient,
            },
            None,
        )
    };
    let (before, before_errors) = tree(&a.before)?;
    let (after, after_errors) = tree(&a.after)?;
    let d = crate::core::diff::diff(
        &before,
        &after,
        &DiffOptions {
            nodes: a.nodes.clone(),
            compile: Options {
                node: None,
                drop_log: a.drop_log.options(),
                new_pods: a.new_pods.options(),
                revoke_established: a.revoke.revoke_established,
            },
        },
    );
    write_output(
        &match a.output {
            TextOrJson::Text => d.to_text(),
            TextOrJson::Json => d.to_json(),
        },
        a.output_file.as_deref(),
    )?;
    if before_errors || after_errors {
        return Err(Failure::invalid(
            "input has errors (see above): invalid policies fail closed, and the comparison above includes that",
        ));
    }
    let (widened, narrowed) = (d.widened(), d.narrowed());
    match a.fail_on {
        FailOn::Widen if widened > 0 => Err(Failure::invalid(format!(
            "--fail-on widen: {widened} row(s) of flows become allowed (listed above)"
        ))),
        FailOn::Any if widened + narrowed > 0 => Err(Failure::invalid(format!(
            "--fail-on any: {widened} row(s) of flows become allowed, {narrowed} denied (listed above)"
        ))),
        _ => Ok(()),
    }
}
