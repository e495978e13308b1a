//! The reference evaluator's expectations, kept as data under `testdata/` and loaded here:
//!
//! - `testdata/oracle-table.yaml` ([`oracle_table`]): the evaluator's own table. A small base
//!   world (namespaces, pods and nodes) and rows; each row adds NetworkPolicies (every one
//!   named `p`), ClusterNetworkPolicies (named in the row) and pods to the base and expects one
//!   verdict for one flow. Addresses in it are IP literals or the names of its `addresses` map.
//! - `testdata/case-verdicts.yaml` ([`case_verdicts`]): a few verdicts per `testdata/` case, so
//!   that each case's YAML means what `testdata/README.md` says.
//!
//! Both are checked by `tests/oracle/table.rs`. The files are read strictly: an unknown field,
//! an unknown address name or protocol, is an error naming the file.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::cases;
use crate::oracle::{Flow, Proto};

/// One row of the evaluator's table: the objects added to the base world, a flow, the
/// expected verdict and why.
#[derive(Debug, Clone)]
pub struct Row {
    /// What the row shows (its failure message).
    pub why: String,
    /// Kubernetes objects added to [`Table::base`]: the row's NetworkPolicies, then its
    /// ClusterNetworkPolicies, then its pods.
    pub objects: Vec<Value>,
    /// The flow judged.
    pub flow: Flow,
    /// Whether the evaluator must allow it.
    pub allowed: bool,
}

/// The evaluator's table: the base world every row starts from, and the rows.
#[derive(Debug, Clone)]
pub struct Table {
    /// Namespaces, then pods, then nodes, as Kubernetes objects.
    pub base: Vec<Value>,
    /// The rows, in file order.
    pub rows: Vec<Row>,
}

/// One expected verdict on a `testdata/` case.
#[derive(Debug, Clone)]
pub struct CaseVerdict {
    /// The case directory under `testdata/`.
    pub case: String,
    /// The flow judged.
    pub flow: Flow,
    /// Whether the evaluator must allow it.
    pub allowed: bool,
    /// Which pods the flow goes between, and what it shows.
    pub why: String,
}

/// Loads `testdata/oracle-table.yaml`; panics naming the file if it is unreadable or malformed.
pub fn oracle_table() -> Table {
    let path = cases::case("oracle-table.yaml");
    let file: TableFile = read(&path);
    let addr = |s: &str| -> IpAddr {
        match file.addresses.get(s) {
            Some(ip) => *ip,
            None => s.parse().unwrap_or_else(|_| {
                panic!(
                    "{}: {s:?} is neither an IP nor an address name",
                    path.display()
                )
            }),
        }
    };
    let base = file
        .namespaces
        .iter()
        .map(|ns| namespace(&ns.name, ns.labels.clone()))
        .chain(file.pods.iter().map(|p| p.object(&addr)))
        .chain(file.nodes.iter().map(|n| n.object(&addr)))
        .collect();
    let rows = file
        .rows
        .iter()
        .map(|r| Row {
            why: r.why.clone(),
            objects: r
                .policies
                .iter()
                .map(|p| policy(&p.namespace, p.spec.clone()))
                .chain(
                    r.cluster_policies
                        .iter()
                        .map(|p| cluster_policy(&p.name, p.spec.clone())),
                )
                .chain(r.pods.iter().map(|p| p.object(&addr)))
                .collect(),
            flow: r.flow.flow(&path, &addr),
            allowed: r.allowed,
        })
        .collect();
    Table { base, rows }
}

/// Loads `testdata/case-verdicts.yaml`, in file order; panics naming the file if it is
/// unreadable or malformed.
pub fn case_verdicts() -> Vec<CaseVerdict> {
    let path = cases::case("case-verdicts.yaml");
    let file: Vec<CaseFile> = read(&path);
    let literal = |s: &str| -> IpAddr {
        s.parse()
            .unwrap_or_else(|_| panic!("{}: {s:?} is not an IP address", path.display()))
    };
    file.into_iter()
        .flat_map(|c| {
            let flows: Vec<(Flow, bool, String)> = c
                .verdicts
                .into_iter()
                .map(|v| {
                    let flow = FlowData {
                        proto: v.proto,
                        from: v.from,
                        to: v.to,
                        port: v.port,
                    };
                    (flow.flow(&path, &literal), v.allowed, v.why)
                })
                .collect();
            flows
                .into_iter()
                .map(move |(flow, allowed, why)| CaseVerdict {
                    case: c.case.clone(),
                    flow,
                    allowed,
                    why,
                })
        })
        .collect()
}

/// A Namespace object.
pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A NetworkPolicy named `p` in `namespace` with the given spec.
pub fn policy(namespace: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": spec,
    })
}

/// A ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) named `name` with the given spec.
pub fn cluster_policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    })
}

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (tests run from the repository)", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    addresses: BTreeMap<String, IpAddr>,
    namespaces: Vec<NamespaceData>,
    pods: Vec<PodData>,
    #[serde(default)]
    nodes: Vec<NodeData>,
    rows: Vec<RowData>,
}

/// A Node: labels and `status.addresses` (type and address name or literal).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeData {
    name: String,
    labels: Value,
    addresses: Vec<NodeAddressData>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeAddressData {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

impl NodeData {
    /// The Node object.
    fn object(&self, addr: &dyn Fn(&str) -> IpAddr) -> Value {
        let addresses: Vec<Value> = self
            .addresses
            .iter()
            .map(|a| json!({"type": a.kind, "address": addr(&a.address).to_string()}))
            .collect();
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels},
            "status": {"addresses": addresses},
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceData {
    name: String,
    labels: Value,
}

/// A pod in the table's shorthand: always on node-1, one container `main`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PodData {
    namespace: String,
    name: String,
    labels: Value,
    ips: Vec<String>,
    #[serde(default)]
    ports: Vec<PortData>,
    /// Default `Running`.
    #[serde(default)]
    phase: Option<String>,
    #[serde(default, rename = "hostNetwork")]
    host_network: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortData {
    #[serde(default)]
    name: Option<String>,
    port: i32,
    #[serde(default)]
    protocol: Option<String>,
}

impl PodData {
    /// The Pod object: `status.podIPs` (and `status.podIP`, the first) from `ips`.
    fn object(&self, addr: &dyn Fn(&str) -> IpAddr) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| {
                let mut port = json!({"containerPort": p.port});
                if let Some(name) = &p.name {
                    port["name"] = json!(name);
                }
                if let Some(protocol) = &p.protocol {
                    port["protocol"] = json!(protocol);
                }
                port
            })
            .collect();
        let ips: Vec<String> = self.ips.iter().map(|s| addr(s).to_string()).collect();
        let pod_ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": self.labels},
            "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "agnhost", "ports": ports}]},
            "status": {"phase": self.phase.as_deref().unwrap_or("Running"), "podIPs": pod_ips},
        });
        if let Some(first) = ips.first() {
            pod["status"]["podIP"] = json!(first);
        }
        if self.host_network {
            pod["spec"]["hostNetwork"] = json!(true);
        }
        pod
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RowData {
    why: String,
    #[serde(default)]
    policies: Vec<PolicyData>,
    #[serde(default)]
    cluster_policies: Vec<ClusterPolicyData>,
    #[serde(default)]
    pods: Vec<PodData>,
    flow: FlowData,
    allowed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyData {
    namespace: String,
    spec: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterPolicyData {
    name: String,
    spec: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowData {
    proto: String,
    from: String,
    to: String,
    port: u16,
}

impl FlowData {
    fn flow(&self, path: &Path, addr: &dyn Fn(&str) -> IpAddr) -> Flow {
        let proto = match self.proto.as_str() {
            "TCP" => Proto::Tcp,
            "UDP" => Proto::Udp,
            "SCTP" => Proto::Sctp,
            other => panic!("{}: unknown protocol {other:?}", path.display()),
        };
        Flow {
            src: addr(&self.from),
            dst: addr(&self.to),
            proto,
            port: self.port,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    case: String,
    verdicts: Vec<CaseVerdictData>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseVerdictData {
    proto: String,
    from: String,
    to: String,
    port: u16,
    allowed: bool,
    why: String,
}
