//! `nftpol graph`: the selector graph as Graphviz DOT or JSON.

use super::args::{GraphArgs, GraphFormat};
use super::input::{load_cluster, print_stdout};
use super::{Failure, Outcome};

/// Prints the graph; exit 1 when the input has invalid objects (the
/// diagnostics above say which).
pub fn graph(a: &GraphArgs) -> Outcome {
    let (cluster, has_errors) = load_cluster(&a.input)?;
    let graph = crate::core::graph::SelectorGraph::build(&cluster);
    let export = crate::core::graph::export::export(&cluster, &graph);
    print_stdout(&match a.format {
        GraphFormat::Dot => crate::core::graph::export::dot(&export),
        GraphFormat::Json => crate::core::graph::export::json(&export),
    })?;
    if has_errors {
        return Err(Failure::Invalid(None));
    }
    Ok(())
}
