//! Lints: policies that are valid but almost certainly do not do what their
//! author meant. Warnings only (never errors, never a change to the
//! ruleset), each naming the object and the field, shown by `nftpol compile`
//! and `nftpol explain` (docs/review.md, "Lint", lists them with real
//! output). Pure, like the rest of the core.
//!
//! | code | what | module |
//! |---|---|---|
//! | `host-network-only` | a policy whose podSelector (a CNP's subject) selects only host-network pods | [`selection`] |
//! | `ipblock-pod-range`, `ipblock-service-range` | an ipBlock (a CNP's `networks`) that includes pod addresses or Service ClusterIPs | [`addresses`] |
//! | `egress-without-dns` | a pod whose egress is denied DNS (UDP 53 to kube-dns) | [`dns`] |
//! | `apiserver-port` | egress to the API server on 443, when after DNAT it listens on another port | [`apiserver`] |
//! | `cnp-same-priority` | ClusterNetworkPolicies of one tier and priority that apply to the same pods | [`priority`] |
//!
//! What a lint deliberately does not flag is written next to it (noise
//! costs more than a missed hint: a lint that fires on correct policies gets
//! ignored).

mod addresses;
mod apiserver;
mod dns;
mod priority;
mod selection;

use crate::core::diag::Diagnostic;
use crate::core::graph::SelectorGraph;
use crate::core::model::lint_input::LintInput;
use crate::core::model::{Cidr, Cluster, ObjectRef};

/// What the lints are told beyond the input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintOptions {
    /// The cluster's Service CIDRs (`--service-cidr`), in addition to the
    /// ClusterIPs of the Services in the input.
    pub service_cidrs: Vec<Cidr>,
    /// At most this many warnings per lint, then one line saying how many
    /// more there are (`--lint-limit`; `None`: all of them).
    pub limit: Option<usize>,
}

/// Every lint over the cluster, in a fixed order: by lint, then object.
pub fn lint(
    cluster: &Cluster,
    graph: &SelectorGraph,
    input: &LintInput,
    opts: &LintOptions,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    selection::host_network_only(cluster, input, &mut out);
    addresses::ranges(cluster, input, opts, &mut out);
    dns::egress_without_dns(cluster, graph, input, &mut out);
    apiserver::port_after_dnat(cluster, graph, input, &mut out);
    priority::same_priority(cluster, graph, input, &mut out);
    match opts.limit {
        Some(limit) => cap(out, limit),
        None => out,
    }
}

/// The lint code of a lint's warning (`[lint CODE] …`).
fn code(d: &Diagnostic) -> Option<&str> {
    d.message.strip_prefix("[lint ")?.split(']').next()
}

/// Keeps the first `limit` warnings of each lint (they come grouped by lint)
/// and says after them how many were left out: on a large cluster one lint
/// can warn thousands of times, and a review reads the first few.
fn cap(diags: Vec<Diagnostic>, limit: usize) -> Vec<Diagnostic> {
    let mut out = Vec::with_capacity(diags.len().min(limit * 8 + 8));
    let mut run: Option<(String, usize)> = None;
    let close = |out: &mut Vec<Diagnostic>, run: Option<(String, usize)>| {
        if let Some((code, n)) = run.filter(|(_, n)| *n > limit) {
            out.push(Diagnostic::warning(format!(
                "[lint {code}] {} more warnings of this lint not shown (--lint-limit 0 shows all)",
                n - limit
            )));
        }
    };
    for d in diags {
        let c = code(&d).unwrap_or_default().to_string();
        match &mut run {
            Some((code, n)) if *code == c => *n += 1,
            _ => {
                close(&mut out, run.take());
                run = Some((c, 1));
            }
        }
        if run.as_ref().is_some_and(|(_, n)| *n <= limit) {
            out.push(d);
        }
    }
    close(&mut out, run);
    out
}

/// A lint's warning: `[lint CODE] message`, on `object` (`Kind ns/name`,
/// with its source when the input has it) and `field`.
fn warning(
    input: &LintInput,
    code: &str,
    object: String,
    field: &str,
    message: &str,
) -> Diagnostic {
    let d = Diagnostic::warning(format!("[lint {code}] {message}")).field(field);
    let d = match input.sources.get(&object) {
        Some(src) => d.at(src),
        None => d,
    };
    d.on(object)
}

/// At most `max` pods by name, then how many more: `a/x, a/y (+3 more)`.
fn some_pods<'a>(pods: impl IntoIterator<Item = &'a ObjectRef>, max: usize) -> String {
    let all: Vec<&ObjectRef> = pods.into_iter().collect();
    let mut s = all
        .iter()
        .take(max)
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > max {
        s.push_str(&format!(" (+{} more)", all.len() - max));
    }
    s
}

#[cfg(test)]
mod tests;
