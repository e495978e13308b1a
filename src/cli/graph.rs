//! `nftpol graph`: the selector graph as Graphviz DOT or JSON.

use super::args::{GraphArgs, GraphFormat};
use super::input::{deprecated, load_cluster, write_output};
use super::{Failure, Outcome};

/// Prints the graph; exit 1 when the input has invalid objects (the
/// diagnostics above say which).
pub fn graph(a: &GraphArgs) -> Outcome {
    let format = output_format(a)?;
    let (cluster, has_errors) = load_cluster(&a.input)?;
    let graph = crate::core::graph::SelectorGraph::build(&cluster);
    let export = crate::core::graph::export::export(&cluster, &graph);
    write_output(
        &match format {
            GraphFormat::Dot => crate::core::graph::export::dot(&export),
            GraphFormat::Json => crate::core::graph::export::json(&export),
        },
        a.output_file.as_deref(),
    )?;
    if has_errors {
        return Err(Failure::Invalid(None));
    }
    Ok(())
}

/// `-o FORMAT`, or the deprecated `--format FORMAT` (with a warning).
fn output_format(a: &GraphArgs) -> Result<GraphFormat, Failure> {
    let name = |f: GraphFormat| match f {
        GraphFormat::Dot => "dot",
        GraphFormat::Json => "json",
    };
    if let Some(f) = a.format {
        deprecated(&format!(
            "--format is deprecated and will be removed in the next release: use -o {}",
            name(f)
        ));
        if let Some(o) = a.output
            && o != f
        {
            return Err(Failure::invalid(format!(
                "--format {} contradicts -o {}",
                name(f),
                name(o)
            )));
        }
    }
    Ok(a.output.or(a.format).unwrap_or(GraphFormat::Dot))
}
