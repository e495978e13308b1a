//! ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`) as serde types,
//! and the CustomResourceDefinition generated from them.
//!
//! The types follow network-policy-api v0.2.0 (commit 0eec1b0e, the
//! experimental channel: `nodes` and `domainNames` peers, the named-port CEL
//! rule). They are deliberately *lenient*: every field is optional and every
//! enum is a string, so an object the API server would reject still decodes
//! and can fail closed with a diagnostic naming the field
//! (`convert::cluster_policy` checks what the CRD's schema and CEL rules
//! check). Absent options are not serialised, so a decoded object
//! re-serialises to its input and `load::unknown_fields` finds exactly the
//! unknown fields.
//!
//! The schema attributes make [`crd_yaml`] the same validation as the
//! upstream CRD (`tests/validity.rs` proves it against a real API server).
//! The CRD is the one thing here that needs kube's derive (no client, no
//! runtime): `tests/tidy.rs` allows `kube` in this file only.

// kube's `printcolumn(type_ = ...)` repeats an attribute name clippy takes
// for a duplicate.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "policy.networking.k8s.io";
/// The only version nftpol reads.
pub const VERSION: &str = "v1alpha2";
/// `apiVersion` of a ClusterNetworkPolicy.
pub const API_VERSION: &str = "policy.networking.k8s.io/v1alpha2";

/// `spec` of a ClusterNetworkPolicy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "policy.networking.k8s.io",
    version = "v1alpha2",
    kind = "ClusterNetworkPolicy",
    plural = "clusternetworkpolicies",
    singular = "clusternetworkpolicy",
    shortname = "cnp",
    status = "ClusterNetworkPolicyStatus",
    derive = "PartialEq",
    doc = "ClusterNetworkPolicy is a cluster-wide network policy resource.",
    annotation("policy.networking.k8s.io/bundle-version", "v0.2.0"),
    annotation("policy.networking.k8s.io/channel", "experimental"),
    annotation(
        "api-approved.kubernetes.io",
        "https://github.com/kubernetes-sigs/network-policy-api/pull/347"
    ),
    printcolumn(name = "Tier", type_ = "string", json_path = ".spec.tier"),
    printcolumn(name = "Priority", type_ = "string", json_path = ".spec.priority"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["priority", "subject", "tier"]))]
pub struct ClusterNetworkPolicySpec {
    /// `Admin` or `Baseline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Admin", "Baseline"]))]
    pub tier: Option<String>,
    /// 0–1000, lower first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000), extend("format" = "int32"))]
    pub priority: Option<i64>,
    /// The pods the policy applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// Ingress rules, in order (at most 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 25))]
    pub ingress: Option<Vec<IngressRule>>,
    /// Egress rules, in order (at most 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 25))]
    pub egress: Option<Vec<EgressRule>>,
}

/// `spec.subject`: exactly one of `namespaces` and `pods`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct Subject {
    /// Every pod of the namespaces this selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods by namespace and pod selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// A namespace selector (absent: every namespace) and a pod selector.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["podSelector"]))]
pub struct NamespacedPod {
    /// Which namespaces; absent or `{}` selects all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Which pods in them; `{}` selects all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// A label selector, with every field optional (the CRD requires `key` and
/// `operator` of an expression; conversion reports them missing).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct LabelSelector {
    /// `key: value` pairs, ANDed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    /// Requirements, ANDed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

/// One `matchExpressions` entry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["key", "operator"]))]
pub struct LabelSelectorRequirement {
    /// The label key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist` (not checked by the CRD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Values for `In` and `NotIn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub values: Option<Vec<String>>,
}

/// One ingress rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["action", "from"]))]
pub struct IngressRule {
    /// A name for humans (at most 100 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub name: Option<String>,
    /// `Accept`, `Deny` or `Pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Accept", "Deny", "Pass"]))]
    pub action: Option<String>,
    /// Sources, ORed (1–25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 25))]
    pub from: Option<Vec<IngressPeer>>,
    /// Protocols and ports, ORed (1–25); absent: everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 25))]
    pub protocols: Option<Vec<ProtocolPort>>,
}

/// The experimental channel's rule on an egress rule, verbatim.
pub const NAMED_PORT_RULE: &str = "!(self.to.exists(peer, has(peer.networks) || has(peer.nodes) || has(peer.domainNames)) && has(self.protocols) && self.protocols.exists(protocol, has(protocol.destinationNamedPort)))";
/// Its message.
pub const NAMED_PORT_MESSAGE: &str = "networks/nodes/domainNames peer cannot be set with namedPorts since there are no namedPorts for networks/nodes/domainNames";

/// One egress rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend(
    "required" = ["action", "to"],
    "x-kubernetes-validations" = [{"rule": NAMED_PORT_RULE, "message": NAMED_PORT_MESSAGE}]
))]
pub struct EgressRule {
    /// A name for humans (at most 100 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub name: Option<String>,
    /// `Accept`, `Deny` or `Pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Accept", "Deny", "Pass"]))]
    pub action: Option<String>,
    /// Destinations, ORed (1–25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 25))]
    pub to: Option<Vec<EgressPeer>>,
    /// Protocols and ports, ORed (1–25); absent: everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 25))]
    pub protocols: Option<Vec<ProtocolPort>>,
}

/// An ingress peer: exactly one of `namespaces` and `pods`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct IngressPeer {
    /// Every pod of the selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods by namespace and pod selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// Fields nftpol does not know (only a lenient load keeps such a peer;
    /// strict loading reports them). Never serialised.
    #[serde(flatten, skip_serializing)]
    #[schemars(skip)]
    pub unrecognised: BTreeMap<String, serde_json::Value>,
}

/// An egress peer: exactly one field.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct EgressPeer {
    /// Every pod of the selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods by namespace and pod selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// The addresses of the selected Nodes (experimental).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    /// CIDRs (1–25, no duplicates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "networks_schema")]
    pub networks: Option<Vec<String>>,
    /// Domain names (experimental; nftpol refuses them until supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "domain_names_schema")]
    pub domain_names: Option<Vec<String>>,
    /// Fields nftpol does not know (only a lenient load keeps such a peer;
    /// strict loading reports them). Never serialised.
    #[serde(flatten, skip_serializing)]
    #[schemars(skip)]
    pub unrecognised: BTreeMap<String, serde_json::Value>,
}

/// The CRD's DomainName pattern, verbatim (`A-z` included).
pub const DOMAIN_NAME_PATTERN: &str = r"^(\*\.)?([a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$";
/// The CIDR rule and its message.
pub const CIDR_RULE: (&str, &str) = ("isCIDR(self)", "Invalid CIDR format provided");
/// The port range rule and its message.
pub const RANGE_RULE: (&str, &str) = (
    "self.start < self.end",
    "Start port must be less than End port",
);

fn networks_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "string",
            "maxLength": 43,
            "x-kubernetes-validations": [{"rule": CIDR_RULE.0, "message": CIDR_RULE.1}],
        },
        "minItems": 1,
        "maxItems": 25,
        "x-kubernetes-list-type": "set",
    })
}

fn domain_names_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {"type": "string", "pattern": DOMAIN_NAME_PATTERN},
        "minItems": 1,
        "maxItems": 25,
        "x-kubernetes-list-type": "set",
    })
}

/// One `protocols` entry: exactly one field.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct ProtocolPort {
    /// TCP ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<ProtocolPorts>,
    /// UDP ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<ProtocolPorts>,
    /// SCTP ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp: Option<ProtocolPorts>,
    /// A named container port of the destination pod (its protocol too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_named_port: Option<String>,
}

/// `tcp`, `udp` or `sctp`: the destination port (required in practice).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1))]
pub struct ProtocolPorts {
    /// A number or a range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<PortSpec>,
}

/// A port: exactly one of `number` and `range`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct PortSpec {
    /// One port, 1–65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub number: Option<i64>,
    /// An inclusive range, start < end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<PortRange>,
}

/// `start`–`end`, inclusive; the CRD requires start < end.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend(
    "required" = ["end", "start"],
    "x-kubernetes-validations" = [{"rule": RANGE_RULE.0, "message": RANGE_RULE.1}]
))]
pub struct PortRange {
    /// First port, 1–65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub start: Option<i64>,
    /// Last port, 1–65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub end: Option<i64>,
}

/// `status`: implementation-defined conditions. nftpol writes none; the API
/// server ignores a status given on create (status subresource).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["conditions"]))]
pub struct ClusterNetworkPolicyStatus {
    /// Conditions (a map list keyed by `type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["type"]
    ))]
    pub conditions: Option<Vec<Condition>>,
}

/// A `metav1.Condition`, every field optional so a bad status never stops
/// a policy from loading.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["lastTransitionTime", "message", "reason", "status", "type"]))]
pub struct Condition {
    /// RFC 3339 time of the last status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: Option<String>,
    /// Human-readable details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub message: Option<String>,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("format" = "int64"))]
    pub observed_generation: Option<i64>,
    /// CamelCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 1024),
        regex(pattern = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    )]
    pub reason: Option<String>,
    /// `True`, `False` or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: Option<String>,
    /// The condition type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 316),
        regex(
            pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
        )
    )]
    pub type_: Option<String>,
}

/// The CustomResourceDefinition of ClusterNetworkPolicy as YAML, generated
/// from these types (`nftpol crd`, deploy/crd-clusternetworkpolicies.yaml).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let mut v = serde_json::to_value(ClusterNetworkPolicy::crd()).unwrap_or_default();
    tidy_schema(&mut v);
    let header = "# ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2), generated by `nftpol crd`\n# from src/core/k8s/cnp.rs; validates as network-policy-api v0.2.0's experimental\n# channel CRD does (tests/validity.rs checks it against a real API server).\n";
    let body = serde_saphyr::to_string(&v).unwrap_or_default();
    format!("{header}{body}")
}

/// Makes the schema structural and exact: options are plain optional fields
/// (no `nullable`, so a `null` is pruned as upstream's CRD prunes it), and
/// bounds are integers (`maximum: 65535`, not `65535.0`).
pub(super) fn tidy_schema(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                && !n.is_i64()
                && !n.is_u64()
            {
                *v = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Object(m) => {
            if m.get("nullable") == Some(&serde_json::Value::Bool(true)) {
                m.remove("nullable");
            }
            if let Some(serde_json::Value::Array(e)) = m.get_mut("enum") {
                e.retain(|x| !x.is_null());
            }
            for (_, x) in m.iter_mut() {
                tidy_schema(x);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(tidy_schema),
        _ => {}
    }
}
