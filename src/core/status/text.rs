//! `nftpol status -o text`.

use super::{LagKind, Report};

/// `nftpol status -o text`: one line per policy, then what lags, fails or is
/// missing. `ago` formats a number of seconds ("45s", "2m 3s").
pub fn text(r: &Report, ago: &dyn Fn(i64) -> String) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let name_w = r
        .policies
        .iter()
        .map(|p| p.id.to_string().len())
        .max()
        .unwrap_or(0)
        .max("POLICY".len());
    let rv_w = r
        .policies
        .iter()
        .map(|p| p.resource_version.len())
        .max()
        .unwrap_or(0)
        .max("VERSION".len());
    let _ = writeln!(
        out,
        "{:name_w$}  {:rv_w$}  PROGRAMMED  LAGGING",
        "POLICY", "VERSION"
    );
    for p in &r.policies {
        let lag: Vec<String> = p
            .lagging
            .iter()
            .map(|l| {
                let what = match (&l.kind, &l.holds) {
                    (LagKind::Older, Some(v)) => format!("holds {v}"),
                    (LagKind::Older, None) | (LagKind::Missing, _) => "missing".to_string(),
                    (LagKind::Unknown, _) => "unknown: policies not listed".to_string(),
                };
                let since = l
                    .seconds
                    .map(|s| format!(", {}", ago(s)))
                    .unwrap_or_default();
                format!("{} ({what}{since})", l.node)
            })
            .collect();
        let _ = writeln!(
            out,
            "{:name_w$}  {:rv_w$}  {:<10}  {}",
            p.id.to_string(),
            p.resource_version,
            format!("{}/{}", p.programmed, p.nodes),
            if lag.is_empty() {
                "-".to_string()
            } else {
                lag.join(", ")
            }
        );
    }
    if let Some(id) = &r.not_found {
        let _ = writeln!(out, "{id}: no such policy");
    } else if r.policies.is_empty() {
        let _ = writeln!(out, "(no policies)");
    }
    for d in &r.deleted {
        let _ = writeln!(
            out,
            "deleted, still held: {} on {}",
            d.id,
            d.nodes.join(", ")
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "nodes with status: {}", r.nodes.len());
    if r.nodes.is_empty() {
        let _ = writeln!(
            out,
            "  no node has published a status (no agent runs yet, wrong --status-namespace, or --status-interval 0)"
        );
    }
    for n in &r.nodes {
        if let Some(f) = &n.failure {
            let since = match (&f.since, f.seconds) {
                (Some(t), Some(s)) => format!(" since {} ({})", t.text, ago(s)),
                _ => String::new(),
            };
            let _ = writeln!(out, "  {} failing{since}: {}", n.node, f.message);
        }
    }
    if !r.without_status.is_empty() {
        let _ = writeln!(
            out,
            "nodes without status (no agent, or --status-interval 0): {}",
            r.without_status.join(", ")
        );
    }
    if !r.stale.is_empty() {
        let _ = writeln!(
            out,
            "statuses of deleted nodes (ignored): {}",
            r.stale.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if r.ok {
            "ok: every node programs every policy shown".to_string()
        } else if r.max_lag_seconds > 0 {
            format!(
                "NOT OK: some node lags or fails for longer than {}",
                ago(r.max_lag_seconds)
            )
        } else {
            "NOT OK: some node lags or fails".to_string()
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cur, input, node};
    use super::super::{PolicyId, report};
    use super::text;

    #[test]
    fn the_text_names_lagging_nodes() {
        let a = PolicyId::network("web", "a");
        let r = report(&input(
            vec![cur(&a, "6", 990)],
            vec![
                node("n1", &[(a.clone(), "6")]),
                node("n2", &[(a.clone(), "5")]),
            ],
            0,
        ));
        let s = text(&r, &|s| format!("{s}s"));
        assert!(
            s.contains("web/a   6        1/2         n2 (holds 5, 10s)"),
            "{s}"
        );
        assert!(s.contains("NOT OK"), "{s}");
    }
}
