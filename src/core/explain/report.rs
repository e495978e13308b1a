//! The answer and its two renderings: the readable text report and the
//! `--output json` document (schema in docs/explain.md; field order and
//! spelling are a contract, snapshotted by `tests/explain.rs`).

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use serde::Serialize;

use crate::core::model::Direction;

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// The ruleset forwards the flow's first packet.
    Allowed,
    /// The ruleset drops it.
    Denied,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allowed => "ALLOWED",
            Verdict::Denied => "DENIED",
        })
    }
}

/// One end of the flow after resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedEndpoint {
    /// `ns/name` when the end is a pod.
    pub pod: Option<String>,
    /// The address used.
    pub ip: IpAddr,
}

/// The flow that was explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// Source.
    pub from: ResolvedEndpoint,
    /// Destination.
    pub to: ResolvedEndpoint,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: &'static str,
    /// Destination port number.
    pub port: u16,
    /// The container port name, when the port was given by name.
    pub port_name: Option<String>,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
}

/// A peer or port of a rule, and whether it matches the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Index in the rule's `from`/`to` or `ports` list.
    pub index: usize,
    /// The peer or port, readable.
    pub what: String,
    /// Whether it matches the flow.
    pub matches: bool,
}

/// How one rule fared against the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleReport {
    /// Index in the policy's `ingress`/`egress` list.
    pub index: usize,
    /// Whether the rule allows the flow (a peer and a port match).
    pub allows: bool,
    /// The rule has no `from`/`to`: every peer matches.
    pub all_peers: bool,
    /// Every peer of the rule (empty when `all_peers`).
    pub peers: Vec<Item>,
    /// The rule has no `ports`: every port and protocol matches.
    pub all_ports: bool,
    /// Every port of the rule (empty when `all_ports`).
    pub ports: Vec<Item>,
}

/// One policy that isolates the pod in this direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    /// `ns/name`.
    pub policy: String,
    /// False when the API server would reject it: it fails closed (isolates, allows nothing).
    pub valid: bool,
    /// Audit mode: it neither isolates nor allows (JSON: present only when true).
    #[serde(skip_serializing_if = "is_false")]
    pub audit: bool,
    /// Whether any of its rules allows the flow.
    pub allows: bool,
    /// Every rule of the direction, in order.
    pub rules: Vec<RuleReport>,
}

/// One direction: egress of the source or ingress of the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    /// Egress of the source or ingress of the destination; JSON `egress` or `ingress`.
    #[serde(serialize_with = "direction_name")]
    pub direction: Direction,
    /// The pod whose policies decide; `None` when that end is not a pod.
    pub pod: Option<String>,
    /// Whether at least one enforced policy isolates the pod in this direction.
    pub isolated: bool,
    /// Whether this direction lets the flow through.
    pub allowed: bool,
    /// The policies that select the pod in this direction (enforced and
    /// audited), sorted.
    pub policies: Vec<PolicyReport>,
    /// The Admin-tier ClusterNetworkPolicies that apply to the pod in this
    /// direction, in evaluation order (absent from JSON when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub admin: Vec<ClusterPolicyReport>,
    /// The Baseline-tier ones, likewise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baseline: Vec<ClusterPolicyReport>,
    /// Audit mode: the audited policies (`ns/name`) and ClusterNetworkPolicy
    /// rules that would drop the flow at this end and log it, in the order
    /// the ruleset reaches them (absent from JSON when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_drop: Vec<String>,
    /// Which tier decided this end, when the cluster has
    /// ClusterNetworkPolicies (absent from JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

/// Which tier, policy and rule decided one end of the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `Admin`, `NetworkPolicy`, `Baseline` or `default` (nothing decided: allowed).
    pub tier: &'static str,
    /// The ClusterNetworkPolicy whose rule decided (Admin, Baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Index of that rule in its direction's list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// `Accept` or `Deny` (a Pass leaves the tier and is recorded in `passed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    /// Tiers a Pass rule left, as `tier policy[rule]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passed: Vec<String>,
}

/// One ClusterNetworkPolicy applying to the pod in this direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterPolicyReport {
    /// Name.
    pub policy: String,
    /// Its priority (lower first).
    pub priority: u32,
    /// False when the API server would reject it: it fails closed (denies everything).
    pub valid: bool,
    /// Audit mode: its rules never decide (JSON: present only when true).
    #[serde(skip_serializing_if = "is_false")]
    pub audit: bool,
    /// Whether it was reached (an earlier rule of the tier may have decided or passed).
    pub evaluated: bool,
    /// Every rule of the direction, in order.
    pub rules: Vec<ClusterRuleReport>,
}

/// How one ClusterNetworkPolicy rule fared against the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterRuleReport {
    /// Index in the policy's `ingress`/`egress` list.
    pub index: usize,
    /// Its `name`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Accept`, `Deny` or `Pass`.
    pub action: &'static str,
    /// Whether a peer and a protocol/port match the flow.
    pub matches: bool,
    /// Every peer of the rule (`from`/`to`; empty for a fail-closed rule that matches everything).
    pub peers: Vec<Item>,
    /// The rule has no `protocols`: every protocol and port matches.
    pub all_ports: bool,
    /// Every protocol/port entry (empty when `all_ports`).
    pub ports: Vec<Item>,
}

/// The full answer; this is also the `--output json` schema (docs/explain.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// ALLOWED or DENIED.
    pub verdict: Verdict,
    /// What was explained.
    pub flow: Flow,
    /// What decides the verdict.
    pub decided_by: DecidedBy,
    /// With `new-pod-window`: the unknown address and its pod range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_pod_address: Option<UnknownPodAddress>,
    /// Egress of the source.
    pub egress: Side,
    /// Ingress of the destination.
    pub ingress: Side,
    /// Things the reader should know: ClusterNetworkPolicies of one tier
    /// and priority that both apply (upstream leaves their order undefined;
    /// nftpol orders them by name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Audit mode: every audited policy or ClusterNetworkPolicy rule that
    /// would drop the flow, which the ruleset logs as it lets the flow on
    /// (egress end, then ingress end; absent from JSON when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_drop: Vec<String>,
}

/// What decides the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DecidedBy {
    /// A pod talking to itself: always allowed, policies are not consulted (JSON `self`).
    #[serde(rename = "self")]
    SelfFlow,
    /// Egress of the source and ingress of the destination decide (JSON `policies`).
    #[serde(rename = "policies")]
    Policies,
    /// An end is an address of the node's pod ranges that is no known pod's:
    /// denied before any policy (the new-pod guard; JSON `new-pod-window`).
    #[serde(rename = "new-pod-window")]
    NewPodWindow,
}

/// The address the new-pod guard denies, and the pod range it lies in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownPodAddress {
    /// The address (the source's or the destination's).
    pub ip: std::net::IpAddr,
    /// The node pod range (a Node's `spec.podCIDRs` entry) holding it.
    pub pod_range: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `(audit: would be dropped by a, b)`.
fn audit_note(would_drop: &[String]) -> String {
    format!("(audit: would be dropped by {})", would_drop.join(", "))
}

/// The JSON spelling of a direction (`egress`, `ingress`).
fn direction_name<S: serde::Serializer>(d: &Direction, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(d.as_str())
}

impl Explanation {
    /// The human-readable report: the verdict line first, then one section
    /// per direction naming policies, rules, peers and ports.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let f = &self.flow;
        let end = |e: &ResolvedEndpoint| match &e.pod {
            Some(p) => format!("{p} ({})", e.ip),
            None => format!("{} (not a pod)", e.ip),
        };
        let port = match &f.port_name {
            Some(n) => format!("{}/{} (port {n:?})", f.protocol, f.port),
            None => format!("{}/{}", f.protocol, f.port),
        };
        let note = if self.would_drop.is_empty() {
            String::new()
        } else {
            format!(" {}", audit_note(&self.would_drop))
        };
        let _ = writeln!(
            s,
            "{}{note}: {} -> {} {port}",
            self.verdict,
            end(&f.from),
            end(&f.to)
        );
        if self.decided_by == DecidedBy::SelfFlow {
            let _ = writeln!(
                s,
                "  a pod may always reach itself: policies are not consulted for this flow"
            );
        }
        if let Some(u) = &self.unknown_pod_address {
            let _ = writeln!(
                s,
                "  denied: unknown pod address in this node's pod range (new-pod window closed): \
                 {} lies in {} but belongs to no known pod; policies are not consulted",
                u.ip, u.pod_range
            );
        }
        for side in [&self.egress, &self.ingress] {
            s.push('\n');
            side.write_text(&mut s, self.decided_by != DecidedBy::Policies);
        }
        for w in &self.warnings {
            let _ = writeln!(s, "\nwarning: {w}");
        }
        s
    }

    /// The `--output json` report: pretty-printed, one trailing newline;
    /// the schema is in docs/explain.md.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("plain data serialises");
        s.push('\n');
        s
    }
}

impl Side {
    /// The tier walk (clusters with ClusterNetworkPolicies): which tier
    /// decided, then each tier's policies and rules.
    fn write_tiers(&self, s: &mut String, d: &Decision, informational: bool) {
        let (title, end) = match self.direction {
            Direction::Egress => ("Egress of", "source"),
            Direction::Ingress => ("Ingress of", "destination"),
        };
        let who = match &self.pod {
            Some(p) => p.clone(),
            None => format!("the {end} (not a pod)"),
        };
        let result = if self.allowed {
            "allowed"
        } else if informational {
            "denied (not consulted)"
        } else {
            "DENIED"
        };
        let by = match (d.tier, &d.policy, d.rule, d.action) {
            ("default", ..) => "nothing (no tier decides; the default allows)".to_string(),
            ("NetworkPolicy", ..) => "NetworkPolicy (the pod is isolated)".to_string(),
            (tier, Some(p), Some(r), Some(a)) => format!(
                "{tier} tier, ClusterNetworkPolicy {p} {}[{r}] {a}",
                self.direction.as_str()
            ),
            (tier, ..) => tier.to_string(),
        };
        let _ = writeln!(s, "{title} {who}: {result}, decided by {by}");
        for p in &d.passed {
            let _ = writeln!(s, "  passed: {p} (Pass leaves the tier)");
        }
        let field = self.direction.as_str();
        let tier_lines = |s: &mut String, tier: &str, reports: &[ClusterPolicyReport]| {
            for p in reports {
                let state = if !p.valid {
                    "INVALID (the API server would reject it): fails closed, denies everything"
                } else if p.evaluated {
                    "evaluated"
                } else {
                    "not reached"
                };
                let _ = writeln!(
                    s,
                    "  {tier} {} (priority {}){}: {state}",
                    p.policy,
                    p.priority,
                    if p.audit {
                        " AUDIT (its rules never decide)"
                    } else {
                        ""
                    }
                );
                for r in &p.rules {
                    let name = r
                        .name
                        .as_deref()
                        .map(|n| format!(" {n:?}"))
                        .unwrap_or_default();
                    // No peers: an invalid policy's fail-closed rule (it matches everything).
                    let peers = if r.peers.is_empty() {
                        "every address (fail-closed rule)".to_string()
                    } else {
                        items(
                            "peer",
                            if field == "egress" { "to" } else { "from" },
                            &r.peers,
                        )
                    };
                    let ports = if r.all_ports {
                        "every protocol and port".to_string()
                    } else {
                        items("protocol", "protocols", &r.ports)
                    };
                    let _ = writeln!(
                        s,
                        "    {field}[{}]{name} {}: {}: {peers}; {ports}",
                        r.index,
                        r.action,
                        if r.matches { "MATCHES" } else { "no match" }
                    );
                }
            }
        };
        tier_lines(s, "Admin", &self.admin);
        if self.pod.is_some() {
            let audited = self.audited_names();
            if self.isolated {
                let _ = writeln!(
                    s,
                    "  NetworkPolicy: isolated by {}",
                    self.enforced_names().join(", ")
                );
            } else if !audited.is_empty() {
                let _ = writeln!(
                    s,
                    "  NetworkPolicy: not isolated (only audited policies select it: {})",
                    audited.join(", ")
                );
            } else {
                let _ = writeln!(s, "  NetworkPolicy: not isolated in this direction");
            }
        }
        tier_lines(s, "Baseline", &self.baseline);
        if !self.would_drop.is_empty() {
            let _ = writeln!(
                s,
                "  audit: would be dropped by {}",
                self.would_drop.join(", ")
            );
        }
    }

    /// The enforced policies' names.
    fn enforced_names(&self) -> Vec<&str> {
        self.policies
            .iter()
            .filter(|p| !p.audit)
            .map(|p| p.policy.as_str())
            .collect()
    }

    /// The audited policies' names.
    fn audited_names(&self) -> Vec<&str> {
        self.policies
            .iter()
            .filter(|p| p.audit)
            .map(|p| p.policy.as_str())
            .collect()
    }

    fn write_text(&self, s: &mut String, informational: bool) {
        let audited = self.audited_names();
        if let Some(d) = &self.decision {
            self.write_tiers(s, d, informational);
            if (!self.isolated && audited.is_empty()) || self.pod.is_none() {
                return;
            }
        }
        let field = self.direction.as_str();
        let (title, peers_field, end, policy_type, peer) = match self.direction {
            Direction::Egress => ("Egress of", "to", "source", "Egress", "destination"),
            Direction::Ingress => ("Ingress of", "from", "destination", "Ingress", "source"),
        };
        let Some(pod) = &self.pod else {
            let _ = writeln!(
                s,
                "{title} the {end}: not a pod, no policy of its own applies: allowed"
            );
            return;
        };
        if !self.isolated && audited.is_empty() {
            let _ = writeln!(
                s,
                "{title} {pod}: not isolated (no NetworkPolicy with {policy_type} selects it): allowed"
            );
            return;
        }
        if !self.isolated {
            let np_would_drop: Vec<String> = self
                .would_drop
                .iter()
                .filter(|w| audited.contains(&w.as_str()))
                .cloned()
                .collect();
            let note = if np_would_drop.is_empty() {
                String::new()
            } else {
                format!("; denied {}", audit_note(&np_would_drop))
            };
            if self.decision.is_none() {
                let _ = writeln!(
                    s,
                    "{title} {pod}: not isolated (only audited policies select it: {}): allowed{note}",
                    audited.join(", ")
                );
            }
        } else {
            let result = if self.allowed {
                "allowed"
            } else if informational {
                "no rule allows it (not consulted)"
            } else {
                "DENIED, no rule allows it"
            };
            let mut line = format!(
                "{title} {pod}: isolated by {}: {result}",
                self.enforced_names().join(", ")
            );
            if !audited.is_empty() {
                line.push_str(&format!(" (audited, not enforced: {})", audited.join(", ")));
            }
            let _ = writeln!(s, "{line}");
        }
        for p in &self.policies {
            if !p.valid {
                let _ = writeln!(
                    s,
                    "  {}: INVALID (the API server would reject it): fails closed, isolates and allows nothing",
                    p.policy
                );
                continue;
            }
            if p.rules.is_empty() {
                let what = if p.audit {
                    " (audit): no {field} rules (would allow nothing)"
                } else {
                    ": no {field} rules (isolates, allows nothing)"
                };
                let _ = writeln!(s, "  {}{}", p.policy, what.replace("{field}", field));
                continue;
            }
            for r in &p.rules {
                let peers = if r.all_peers {
                    format!("every {peer} (no {peers_field})")
                } else {
                    items(&format!("{peers_field} peer"), peers_field, &r.peers)
                };
                let ports = if r.all_ports {
                    "every port (no ports)".to_string()
                } else {
                    items("port", "ports", &r.ports)
                };
                let _ = writeln!(
                    s,
                    "  {}{} {field}[{}]: {}: {peers}; {ports}",
                    p.policy,
                    if p.audit { " (audit)" } else { "" },
                    r.index,
                    if r.allows { "ALLOWS" } else { "no match" }
                );
            }
        }
    }
}

/// The matching items, or "no X matches" with every item when none does.
fn items(what: &str, field: &str, items: &[Item]) -> String {
    let list = |it: &mut dyn Iterator<Item = &Item>| {
        it.map(|i| format!("{field}[{}] {}", i.index, i.what))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if items.iter().any(|i| i.matches) {
        list(&mut items.iter().filter(|i| i.matches))
    } else {
        format!("no {what} matches ({})", list(&mut items.iter()))
    }
}

/// A warning for every pair of ClusterNetworkPolicies of one tier and
/// priority that both apply to one end of the flow: upstream leaves their
/// relative order undefined (nftpol orders them by name).
pub(super) fn same_priority_warnings(egress: &Side, ingress: &Side) -> Vec<String> {
    let mut out = Vec::new();
    for side in [egress, ingress] {
        for (tier, reports) in [("Admin", &side.admin), ("Baseline", &side.baseline)] {
            for (i, a) in reports.iter().enumerate() {
                for b in &reports[i + 1..] {
                    if a.priority == b.priority {
                        let pod = side.pod.as_deref().unwrap_or("?");
                        out.push(format!(
                            "ClusterNetworkPolicies {} and {} are both {} tier, priority {}, and both apply to the {} of {pod}: upstream leaves their order undefined; nftpol evaluates {} first (by name). Give them distinct priorities.",
                            a.policy,
                            b.policy,
                            tier,
                            a.priority,
                            side.direction.as_str(),
                            a.policy
                        ));
                    }
                }
            }
        }
    }
    out
}
