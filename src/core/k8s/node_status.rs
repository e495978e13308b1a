//! `NodeProgramStatus` (`nftpol.io/v1alpha1`, namespaced): what one node's
//! agent has programmed into its kernel, published by the agent
//! (`src/agent/status.rs`) and read by `nftpol status`.
//!
//! One object per node, named after the node, in the agent's own namespace:
//! O(nodes) objects and O(nodes) writes, each write rate-limited
//! (`--status-interval`). The policies it holds are listed by namespace and
//! name with their `resourceVersion` (a `name: resourceVersion` map per
//! namespace, so a namespace's name is written once): about 30 bytes per
//! policy, 300 KB at 10,000 policies. Past [`MAX_LISTED`] policies the lists
//! are left out (`policiesOmitted`) so the object stays far below etcd's
//! 1.5 MiB limit; `nftpol status` then reports the node as unknown.
//!
//! The data is in `spec`, as a Lease keeps its holder's renewals in `spec`:
//! the object has exactly one writer (its node's agent) and is a report, not
//! a request to reconcile; without a status subresource one server-side
//! apply both creates and updates it, and RBAC needs one resource.
//!
//! Times are RFC 3339 strings (UTC, seconds), as `metav1.Time` prints them;
//! the core reads no clock, so the agent fills them in.
//!
//! Like [`super::cnp`], the CRD is derived with kube's derive (no client);
//! `tests/tidy.rs` allows `kube` here and in `cnp.rs` only.

// kube's `printcolumn(type_ = ...)` repeats an attribute name clippy takes
// for a duplicate.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{ClusterNetworkPolicy, NetworkPolicy};
use crate::core::status::{Current, NodeState, PolicyId, Time};

/// The API group.
pub const GROUP: &str = "nftpol.io";
/// The version.
pub const VERSION: &str = "v1alpha1";
/// The plural resource name (RBAC, URLs).
pub const PLURAL: &str = "nodeprogramstatuses";
/// Most policies one object lists; past this the lists are left out.
pub const MAX_LISTED: usize = 30_000;
/// Longest error message kept (bytes; longer ones are cut at a char boundary).
pub const MAX_ERROR: usize = 2048;

/// `spec` of a NodeProgramStatus: what the node's kernel holds.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "nftpol.io",
    version = "v1alpha1",
    kind = "NodeProgramStatus",
    plural = "nodeprogramstatuses",
    singular = "nodeprogramstatus",
    shortname = "nps",
    namespaced,
    derive = "PartialEq",
    doc = "What nftpol's agent on one node has programmed into the kernel (table inet nftpol): the ruleset's generation and hash, when it was applied, the policies it holds with their resourceVersion, and the last error. Written by that node's agent; read by `nftpol status`.",
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.node"),
    printcolumn(name = "Generation", type_ = "integer", json_path = ".spec.generation"),
    printcolumn(name = "Applied", type_ = "date", json_path = ".spec.appliedAt"),
    printcolumn(
        name = "Error",
        type_ = "string",
        json_path = ".spec.lastError.message"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodeProgramStatusSpec {
    /// The node (also the object's name).
    pub node: String,
    /// Ruleset generation: the number of applies that changed the kernel
    /// table since this agent started (0: none yet).
    #[serde(default)]
    pub generation: i64,
    /// `sha256:` and the hex SHA-256 of the ruleset in the kernel as
    /// `nftpol compile --node NODE` prints it (empty before the first apply).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ruleset_hash: String,
    /// When the kernel table last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub applied_at: Option<String>,
    /// When the last successful sync ended, changed or not (RFC 3339): the
    /// policies below are those of that sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub synced_at: Option<String>,
    /// NetworkPolicies programmed: namespace → name → resourceVersion.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network_policies: BTreeMap<String, BTreeMap<String, String>>,
    /// ClusterNetworkPolicies programmed: name → resourceVersion.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cluster_network_policies: BTreeMap<String, String>,
    /// Number of policies held but not listed (more than the object may
    /// list); 0 when the lists are complete.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub policies_omitted: i64,
    /// The last apply failed: the kernel still holds the ruleset above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
}

/// A failing apply.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// What failed (the nft or kernel message).
    pub message: String,
    /// When the failures began (RFC 3339): the first of the failing applies
    /// since the last success.
    #[schemars(extend("format" = "date-time"))]
    pub since: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The policies a sync compiled, as the spec lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// namespace → name → resourceVersion.
    pub network_policies: BTreeMap<String, BTreeMap<String, String>>,
    /// name → resourceVersion.
    pub cluster_network_policies: BTreeMap<String, String>,
}

impl Held {
    /// The policies of a store, by name and resourceVersion (objects
    /// without a name are left out: the API server never sends one).
    pub fn of<'a>(
        policies: impl IntoIterator<Item = &'a NetworkPolicy>,
        cluster_policies: impl IntoIterator<Item = &'a ClusterNetworkPolicy>,
    ) -> Held {
        let mut h = Held::default();
        for p in policies {
            let m = &p.metadata;
            if let Some(name) = &m.name {
                h.network_policies
                    .entry(m.namespace.clone().unwrap_or_default())
                    .or_default()
                    .insert(name.clone(), m.resource_version.clone().unwrap_or_default());
            }
        }
        for p in cluster_policies {
            let m = &p.metadata;
            if let Some(name) = &m.name {
                h.cluster_network_policies
                    .insert(name.clone(), m.resource_version.clone().unwrap_or_default());
            }
        }
        h
    }

    /// How many policies.
    pub fn len(&self) -> usize {
        self.network_policies
            .values()
            .map(BTreeMap::len)
            .sum::<usize>()
            + self.cluster_network_policies.len()
    }

    /// No policies at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the agent knows when it publishes; [`spec`] turns it into the object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Programmed {
    /// The node.
    pub node: String,
    /// See [`NodeProgramStatusSpec::generation`].
    pub generation: i64,
    /// See [`NodeProgramStatusSpec::ruleset_hash`].
    pub ruleset_hash: String,
    /// RFC 3339.
    pub applied_at: Option<String>,
    /// RFC 3339.
    pub synced_at: Option<String>,
    /// The policies of the last successful sync.
    pub held: Held,
    /// The current failure: message and since (RFC 3339).
    pub error: Option<(String, String)>,
}

/// The spec published for `p`, within the size bounds ([`MAX_LISTED`],
/// [`MAX_ERROR`]).
pub fn spec(p: &Programmed) -> NodeProgramStatusSpec {
    let n = p.held.len();
    let listed = n <= MAX_LISTED;
    NodeProgramStatusSpec {
        node: p.node.clone(),
        generation: p.generation,
        ruleset_hash: p.ruleset_hash.clone(),
        applied_at: p.applied_at.clone(),
        synced_at: p.synced_at.clone(),
        network_policies: if listed {
            p.held.network_policies.clone()
        } else {
            BTreeMap::new()
        },
        cluster_network_policies: if listed {
            p.held.cluster_network_policies.clone()
        } else {
            BTreeMap::new()
        },
        policies_omitted: if listed { 0 } else { n as i64 },
        last_error: p.error.as_ref().map(|(m, since)| LastError {
            message: truncate(m, MAX_ERROR),
            since: since.clone(),
        }),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The policies the API server holds, for [`crate::core::status`]: each
/// with its resourceVersion and when it last changed (the newest of its
/// creation and its `managedFields` times: every write by any manager moves
/// its entry's time).
pub fn current_policies(
    policies: &[NetworkPolicy],
    cluster_policies: &[ClusterNetworkPolicy],
) -> Vec<Current> {
    let one = |id: PolicyId, m: &ObjectMeta| Current {
        id,
        resource_version: m.resource_version.clone().unwrap_or_default(),
        changed_at: m
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|f| f.time.as_ref())
            .chain(m.creation_timestamp.as_ref())
            .map(|t| t.0)
            .max()
            .map(|t| Time {
                secs: t.as_second(),
                text: t.to_string(),
            }),
    };
    let mut out = Vec::new();
    for p in policies {
        let m = &p.metadata;
        if let Some(name) = &m.name {
            out.push(one(
                PolicyId::network(m.namespace.as_deref().unwrap_or_default(), name),
                m,
            ));
        }
    }
    for p in cluster_policies {
        if let Some(name) = &p.metadata.name {
            out.push(one(PolicyId::cluster(name), &p.metadata));
        }
    }
    out
}

/// A published status as [`crate::core::status`] reads it. A timestamp that
/// does not parse as RFC 3339 counts as unknown.
pub fn node_state(o: &NodeProgramStatus) -> NodeState {
    let s = &o.spec;
    let held = (s.policies_omitted == 0).then(|| {
        let mut h = BTreeMap::new();
        for (ns, names) in &s.network_policies {
            for (name, rv) in names {
                h.insert(PolicyId::network(ns, name), rv.clone());
            }
        }
        for (name, rv) in &s.cluster_network_policies {
            h.insert(PolicyId::cluster(name), rv.clone());
        }
        h
    });
    let node = if s.node.is_empty() {
        o.metadata.name.clone().unwrap_or_default()
    } else {
        s.node.clone()
    };
    NodeState {
        node,
        generation: s.generation,
        ruleset_hash: s.ruleset_hash.clone(),
        applied_at: s.applied_at.as_deref().and_then(parse_time),
        held,
        error: s
            .last_error
            .as_ref()
            .map(|e| (e.message.clone(), parse_time(&e.since))),
    }
}

/// An RFC 3339 time.
pub fn parse_time(text: &str) -> Option<Time> {
    let t: k8s_openapi::jiff::Timestamp = text.parse().ok()?;
    Some(Time {
        secs: t.as_second(),
        text: text.to_string(),
    })
}

/// The CustomResourceDefinition as YAML (`nftpol crd nodeprogramstatuses`,
/// deploy/manifests/04-crd-nodeprogramstatuses.yaml).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let mut v = serde_json::to_value(NodeProgramStatus::crd()).unwrap_or_default();
    super::cnp::tidy_schema(&mut v);
    let header = "# NodeProgramStatus (nftpol.io/v1alpha1), generated by `nftpol crd nodeprogramstatuses`\n# from src/core/k8s/node_status.rs: one object per node, written by that node's agent,\n# read by `nftpol status` (docs/operations.md).\n";
    let body = serde_saphyr::to_string(&v).unwrap_or_default();
    format!("{header}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn np(ns: &str, name: &str, rv: &str) -> NetworkPolicy {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name, "resourceVersion": rv}}))
        .unwrap()
    }

    #[test]
    fn held_policies_are_grouped_by_namespace() {
        let cnp: ClusterNetworkPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "c", "resourceVersion": "9"}, "spec": {}}))
        .unwrap();
        let h = Held::of(
            &[np("a", "x", "1"), np("a", "y", "2"), np("b", "x", "3")],
            [&cnp],
        );
        assert_eq!(h.len(), 4);
        assert_eq!(h.network_policies["a"]["y"], "2");
        assert_eq!(h.network_policies["b"]["x"], "3");
        assert_eq!(h.cluster_network_policies["c"], "9");
    }

    #[test]
    fn current_versions_and_change_times_come_from_the_metadata() {
        let p: NetworkPolicy = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "web", "name": "a", "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [
                    {"manager": "kubectl", "operation": "Apply", "time": "2026-01-01T00:05:00Z"},
                    {"manager": "other", "operation": "Update", "time": "2026-01-01T00:02:00Z"}]}}))
        .unwrap();
        let c = current_policies(&[p], &[]);
        assert_eq!(c[0].id, PolicyId::network("web", "a"));
        assert_eq!(c[0].resource_version, "7");
        let t = c[0].changed_at.clone().unwrap();
        assert_eq!(t.text, "2026-01-01T00:05:00Z");
        assert_eq!(t.secs, 1_767_225_900);
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn a_published_spec_reads_back() {
        let mut p = Programmed {
            node: "n1".into(),
            generation: 3,
            applied_at: Some("2026-01-01T00:00:00Z".into()),
            error: Some(("boom".into(), "2026-01-01T00:01:00Z".into())),
            ..Programmed::default()
        };
        p.held
            .network_policies
            .entry("web".into())
            .or_default()
            .insert("a".into(), "7".into());
        p.held
            .cluster_network_policies
            .insert("c".into(), "9".into());
        let st = node_state(&NodeProgramStatus::new("n1", spec(&p)));
        assert_eq!(st.node, "n1");
        assert_eq!(st.generation, 3);
        let held = st.held.unwrap();
        assert_eq!(held[&PolicyId::network("web", "a")], "7");
        assert_eq!(held[&PolicyId::cluster("c")], "9");
        assert_eq!(st.error.unwrap().1.unwrap().secs, 1_767_225_660);
    }

    #[test]
    fn the_spec_stays_bounded() {
        let mut p = Programmed {
            node: "n".into(),
            error: Some(("é".repeat(MAX_ERROR), "2026-01-01T00:00:00Z".into())),
            ..Programmed::default()
        };
        for i in 0..=MAX_LISTED {
            p.held
                .network_policies
                .entry("ns".into())
                .or_default()
                .insert(format!("p{i}"), "1".into());
        }
        let s = spec(&p);
        assert!(s.network_policies.is_empty(), "too many to list");
        assert_eq!(s.policies_omitted, (MAX_LISTED + 1) as i64);
        let msg = s.last_error.unwrap().message;
        assert!(msg.len() <= MAX_ERROR + '…'.len_utf8(), "{}", msg.len());
        p.held.network_policies.clear();
        assert_eq!(spec(&p).policies_omitted, 0);
    }
}
