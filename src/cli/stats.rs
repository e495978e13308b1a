//! `nftpol compile --stats`: the cost report. Per node (every node the
//! input names, or only `--node`) and for the whole cluster: the table's
//! size and its predicted load time and new-connection cost
//! (`core::nft::cost`, docs/performance.md "Cost model"). The report
//! replaces the ruleset on stdout (an operator asking for it wants the
//! numbers, and `nftpol compile` without `--stats` gives the ruleset);
//! diagnostics and lints go to stderr as usual.

use serde::Serialize;

use super::args::{CompileArgs, Format};
use super::input::{has_errors, report, write_output};
use super::{Failure, Outcome};
use crate::core::compile::Options;
use crate::core::nft::cost::{Cost, MODEL, Model, cost};

/// One row: a node's table, or the whole cluster's.
#[derive(Debug, Serialize)]
struct Row {
    /// The node, or `None` for the whole cluster (every pod enforced).
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    /// Pods the table enforces.
    enforced_pods: usize,
    #[serde(flatten)]
    cost: Cost,
}

#[derive(Debug, Serialize)]
struct Report {
    model: Model,
    nodes: Vec<Row>,
    cluster: Row,
}

/// Compiles the input once per node and once for the whole cluster and
/// prints the report. Exit 1 when the input has errors (the report is
/// still printed: invalid policies fail closed and are counted as such).
pub fn stats(a: &CompileArgs, format: Format, file: Option<&std::path::Path>) -> Outcome {
    let lint = a.lint.options().map_err(Failure::invalid)?;
    let (objs, load_diags) =
        crate::core::k8s::load_paths_with(&a.input.files, a.input.unknown_fields());
    report(&load_diags);
    if has_errors(&load_diags) {
        return Err(Failure::invalid("input has errors; no report produced"));
    }
    let (cluster, mut diags) = crate::core::k8s::to_cluster(&objs);
    let graph = crate::core::graph::SelectorGraph::build(&cluster);
    diags.extend(crate::core::lint::lint(
        &cluster,
        &graph,
        &crate::core::k8s::lint_input(&objs),
        &lint,
    ));
    report(&diags);
    let nodes: Vec<String> = match &a.input.node {
        Some(n) => vec![n.clone()],
        None => crate::core::k8s::node_names(&objs).into_iter().collect(),
    };
    let row = |node: Option<String>| {
        let out = crate::core::compile::compile(
            &cluster,
            &graph,
            &Options {
                node: node.clone(),
                drop_log: a.drop_log.options(),
                new_pods: a.new_pods.options(),
                revoke_established: a.revoke.revoke_established,
            },
        );
        let bytes = crate::core::nft::render::script(&out.ruleset).len();
        Row {
            node,
            enforced_pods: out.enforced_pods,
            cost: cost(&out.ruleset, bytes),
        }
    };
    let r = Report {
        model: MODEL,
        nodes: nodes.into_iter().map(|n| row(Some(n))).collect(),
        cluster: row(None),
    };
    let text = match format {
        Format::Json => {
            serde_json::to_string_pretty(&r)
                .map_err(|e| Failure::internal(format!("cannot render the report: {e}")))?
                + "\n"
        }
        Format::Nft => text(&r),
    };
    write_output(&text, file)?;
    if has_errors(&diags) {
        return Err(Failure::invalid(
            "input has errors (see above): invalid policies fail closed, and the report counts them so",
        ));
    }
    Ok(())
}

fn text(r: &Report) -> String {
    let m = &r.model;
    let mut s = format!(
        "# nftpol cost report: predicted, not measured (docs/performance.md, \"Cost model\").\n\
         # load = {:.2} ms + {} us/rule + {} us/set or map + {} us/element + {} ns/(rule x set) (one `nft -f` of the whole table);\n\
         # new conn = {:.0} ns x the rules on the worst path of a new connection's first packet (both ends).\n",
        m.load_fixed_us / 1000.0,
        m.load_per_rule_us,
        m.load_per_set_us,
        m.load_per_element_us,
        m.load_per_rule_set_ns,
        m.packet_per_rule_ns
    );
    let header = [
        "table",
        "pods",
        "chains",
        "rules",
        "sets",
        "maps",
        "elements",
        "bytes",
        "load ms",
        "path rules",
        "ingress",
        "lookups",
        "new conn us",
    ];
    let mut rows: Vec<[String; 13]> = Vec::new();
    for row in r.nodes.iter().chain(std::iter::once(&r.cluster)) {
        let c = &row.cost;
        rows.push([
            match &row.node {
                Some(n) => format!("node {n}"),
                None => "cluster (all pods)".to_string(),
            },
            row.enforced_pods.to_string(),
            c.chains.to_string(),
            c.rules.to_string(),
            c.sets.to_string(),
            c.maps.to_string(),
            c.elements.to_string(),
            c.bytes.to_string(),
            format!("{:.1}", c.load_ms),
            c.first_packet.rules.to_string(),
            c.ingress.rules.to_string(),
            c.first_packet.lookups.to_string(),
            format!("{:.2}", c.new_connection_us),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 0 {
                l.push_str(&format!("{c:<w$}", w = widths[0]));
            } else {
                l.push_str(&format!("  {c:>w$}", w = widths[i]));
            }
        }
        l.push('\n');
        l
    };
    s.push_str(&line(&header));
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        s.push_str(&line(&cells));
    }
    s
}
