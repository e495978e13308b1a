//! `nftpol explain`: why one flow is allowed or denied.

use super::args::{ExpectVerdict, ExplainArgs, ExplainOutput, FamilyArg};
use super::input::{load_cluster, write_output};
use super::{Failure, Outcome};
use crate::core::explain::{Query, Verdict};
use crate::core::model::Family;

/// Parses the question, answers it over the manifests and prints the
/// report. Exit 1 on invalid input, invalid policies (the fail-closed answer
/// is still printed) or an unmet `--expect`.
pub fn explain(a: &ExplainArgs) -> Outcome {
    // Endpoints and the port are parsed here, not by clap, so a bad value
    // exits 1 (invalid input) like every other input error.
    let query = parse_query(a).map_err(|e| Failure::invalid(format!("explain: {e}")))?;
    let lint = a.lint.options().map_err(Failure::invalid)?;
    let (cluster, has_errors) = load_cluster(&a.input, Some(&lint))?;
    let graph = crate::core::graph::SelectorGraph::build(&cluster);
    let ex = crate::core::explain::explain(&cluster, &graph, &query)
        .map_err(|e| Failure::invalid(format!("explain: {e}")))?;
    write_output(
        &match a.output {
            ExplainOutput::Text => ex.to_text(),
            ExplainOutput::Json => ex.to_json(),
        },
        a.output_file.as_deref(),
    )?;
    if has_errors {
        return Err(Failure::invalid(
            "input has errors (see above): invalid policies fail closed, and the answer above includes that",
        ));
    }
    let want = a.expect.map(|e| match e {
        ExpectVerdict::Allowed => Verdict::Allowed,
        ExpectVerdict::Denied => Verdict::Denied,
    });
    match want {
        Some(w) if w != ex.verdict => Err(Failure::invalid(format!(
            "expected {w}, but the flow is {}",
            ex.verdict
        ))),
        _ => Ok(()),
    }
}

fn parse_query(a: &ExplainArgs) -> Result<Query, String> {
    Ok(Query {
        from: a.from.parse().map_err(|e| format!("--from: {e}"))?,
        to: a.to.parse().map_err(|e| format!("--to: {e}"))?,
        port: a.port.parse().map_err(|e| format!("--port: {e}"))?,
        family: a.family.map(|f| match f {
            FamilyArg::Ipv4 => Family::V4,
            FamilyArg::Ipv6 => Family::V6,
        }),
    })
}
