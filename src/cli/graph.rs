//! `nftpol graph`: the selector graph as Graphviz DOT or JSON, filtered and
//! with pods grouped as the flags ask.

use super::args::{GraphArgs, GraphFormat};
use super::input::{deprecated, load_cluster, write_output};
use super::{Failure, Outcome};
use crate::core::graph::view::{Focus, View};

/// Prints the graph; exit 1 when a filter is malformed or names nothing
/// (nothing printed), or when the input has invalid objects (the
/// diagnostics above say which; the graph is printed).
pub fn graph(a: &GraphArgs) -> Outcome {
    let format = output_format(a)?;
    let view = parse_view(a).map_err(|e| Failure::invalid(format!("graph: {e}")))?;
    let (cluster, has_errors) = load_cluster(&a.input, None)?;
    let graph = crate::core::graph::SelectorGraph::build(&cluster);
    let export = crate::core::graph::export::export(&cluster, &graph);
    let export = crate::core::graph::view::view(&export, &view).map_err(|unmatched| {
        let lines: Vec<String> = unmatched
            .iter()
            .map(|u| {
                let (flag, value) = flag_of(&u.focus);
                format!("graph: {flag} {value:?}: {}", u.reason)
            })
            .collect();
        Failure::invalid(lines.join("\nnftpol: "))
    })?;
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

/// Parses one filter flag's value.
type FocusParser = fn(&str) -> Result<Focus, String>;

/// The filters, each value checked; the message names the flag and value.
fn parse_view(a: &GraphArgs) -> Result<View, String> {
    let mut focus = Vec::new();
    let flags: [(&str, &[String], FocusParser); 3] = [
        ("--namespace", &a.namespaces, Focus::namespace),
        ("--policy", &a.policies, Focus::policy),
        ("--pod", &a.pods, Focus::pod),
    ];
    for (flag, values, parse) in flags {
        for v in values {
            focus.push(parse(v).map_err(|e| format!("{flag} {v:?}: {e}"))?);
        }
    }
    Ok(View {
        focus,
        expand_pods: a.expand_pods,
    })
}

/// The flag and value that made a filter (for messages).
fn flag_of(f: &Focus) -> (&'static str, String) {
    match f {
        Focus::Namespace(n) => ("--namespace", n.clone()),
        Focus::Policy(p) => ("--policy", p.to_string()),
        Focus::ClusterPolicy(n) => ("--policy", n.clone()),
        Focus::Pod(p) => ("--pod", p.to_string()),
    }
}
