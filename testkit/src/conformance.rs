//! The conformance runner for `testdata/upstream/` and
//! `testdata/cluster-network-policy/conformance/` (format: `testdata/upstream/FORMAT.md`).
//!
//! Two halves:
//! - **Planning** (pure, done once): each case is played on a copy of the base cluster; after
//!   every step the objects are compiled into each node's `--node` ruleset, and every probe of
//!   the step is listed with the case's expectation. The expectation is also checked against
//!   the reference evaluator (`oracle.rs`), so a transcription mistake in a case file shows up
//!   as its own failure category instead of as a compiler bug.
//! - **Playing** (per shape, on one live topology): every step of every case in sequence; each
//!   step loads its rulesets in place (`nft -f`, an atomic table replacement) and runs all of
//!   its probes in one concurrent batch. The topology is never rebuilt between cases or steps.
//!
//! Used by `tests/conformance.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::Deserialize;
use serde_json::Value;

use crate::oracle;
use crate::{Family, Outcome, ProbeSpec, Proto, Shape, TopoSpec, Topology};

/// A verdict word of a case file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The probe must reach its destination.
    Allowed,
    /// The probe must not reach its destination.
    Denied,
}

/// An address family as a case file spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FamilyName {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl FamilyName {
    fn family(self) -> Family {
        match self {
            FamilyName::V4 => Family::V4,
            FamilyName::V6 => Family::V6,
        }
    }
}

/// A protocol as a case file spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum ProtoName {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

impl ProtoName {
    fn proto(self) -> Proto {
        match self {
            ProtoName::Tcp => Proto::Tcp,
            ProtoName::Udp => Proto::Udp,
            ProtoName::Sctp => Proto::Sctp,
        }
    }
}

/// One conformance case file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique slug: the file name without its `NN-` prefix.
    pub name: String,
    /// The upstream `It()` title it transcribes (for the ClusterNetworkPolicy suite: the
    /// test's ShortName; each step's description is then its sub-test's title).
    #[serde(default)]
    pub upstream: Option<String>,
    /// Why an nftpol-specific case exists.
    #[serde(default)]
    pub custom: Option<String>,
    /// Families it runs in (default both), once per family.
    #[serde(default)]
    pub families: Option<Vec<FamilyName>>,
    /// Steps, applied on top of each other.
    pub steps: Vec<Step>,
}

/// One step of a case.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the step does.
    #[serde(default)]
    pub description: Option<String>,
    /// YAML stream of objects to create or replace (templates allowed).
    #[serde(default)]
    pub objects: Option<String>,
    /// Objects removed before `objects` is applied.
    #[serde(default)]
    pub delete: Vec<DeleteRef>,
    /// Probe groups, all run in one batch after the step is applied.
    #[serde(default)]
    pub probes: Vec<ProbeGroup>,
}

/// An object to delete.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRef {
    /// Kind (one of [`POLICY_KINDS`]).
    pub kind: String,
    /// Namespace (default `default`; none for a ClusterNetworkPolicy).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// Every pod to every pod on the listed ports and protocols.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeGroup {
    /// Destination ports.
    pub ports: Vec<u16>,
    /// Protocols.
    pub protocols: Vec<ProtoName>,
    /// Verdict of every pair not listed in `except`.
    pub expect: Verdict,
    /// Pairs with another verdict; later lines win.
    #[serde(default)]
    pub except: Vec<Except>,
    /// When set, only these pairs are probed (instead of every pod to every pod).
    #[serde(default)]
    pub pairs: Option<Vec<Pair>>,
}

/// A line of `pairs`: the only sources and destinations a group probes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    /// Source pattern `ns/pod` (`*` wildcards); never a hostNetwork pod.
    pub from: String,
    /// Destination pattern `ns/pod` (`*` wildcards); a hostNetwork pod is probed at its node's
    /// address.
    pub to: String,
    /// `service`: through the Service whose backend is the destination (its ClusterIP, port
    /// [`SERVICE_PORT`]), instead of the pod's own address.
    #[serde(default)]
    pub via: Option<Via>,
}

/// How a pair reaches its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Through the destination's Service (kube-proxy-style DNAT in the node).
    Service,
}

/// A line of `except`: a pattern pair and an optional verdict (default: the opposite).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Except {
    /// Source pattern `ns/pod` (`*` wildcards).
    pub from: String,
    /// Destination pattern `ns/pod` (`*` wildcards).
    pub to: String,
    /// Verdict for matching pairs; the opposite of the group's when absent.
    #[serde(default)]
    pub expect: Option<Verdict>,
}

/// Glob match where `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

/// Does an `ns/pod` pattern match the label `ns/pod`?
fn pattern_matches(pattern: &str, label: &str) -> bool {
    match (pattern.split_once('/'), label.split_once('/')) {
        (Some((pn, pp)), Some((ln, lp))) => glob(pn, ln) && glob(pp, lp),
        _ => false,
    }
}

impl ProbeGroup {
    /// The group's verdict for the pair `from` → `to` (labels `ns/pod`).
    pub fn expected(&self, from: &str, to: &str) -> bool {
        let base = self.expect == Verdict::Allowed;
        let mut verdict = base;
        for e in &self.except {
            if pattern_matches(&e.from, from) && pattern_matches(&e.to, to) {
                verdict = match e.expect {
                    Some(v) => v == Verdict::Allowed,
                    None => !base,
                };
            }
        }
        verdict
    }

    fn check_patterns(&self, pods: &[BasePod]) -> Result<()> {
        let pairs = self.pairs.iter().flatten().map(|p| (&p.from, &p.to));
        for (from, to) in self.except.iter().map(|e| (&e.from, &e.to)).chain(pairs) {
            for p in [from, to] {
                ensure!(
                    pods.iter().any(|pod| pattern_matches(p, &pod.label)),
                    "pattern {p:?} matches no pod"
                );
            }
        }
        Ok(())
    }
}

/// Loads every case file of `dir` (all `*.yaml` but `cluster.yaml`), sorted by file name.
/// A file that does not parse is returned as an error next to its path.
pub fn load_cases(dir: &Path) -> Result<Vec<(PathBuf, Result<Case>)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| {
        p.extension().is_some_and(|e| e == "yaml")
            && p.file_name().is_some_and(|n| n != "cluster.yaml")
    });
    files.sort();
    Ok(files
        .into_iter()
        .map(|path| {
            let case = std::fs::read_to_string(&path)
                .map_err(anyhow::Error::from)
                .and_then(|text| parse_case(&text, &path));
            (path, case)
        })
        .collect())
}

fn yaml_options() -> serde_saphyr::Options {
    // As kubectl reads them: `y`, `n`, `on` stay strings.
    serde_saphyr::options! { strict_booleans: true }
}

fn parse_case(text: &str, path: &Path) -> Result<Case> {
    let case: Case =
        serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| anyhow!("{e}"))?;
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let slug = stem
        .split_once('-')
        .filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
        .map_or(&*stem, |(_, rest)| rest);
    ensure!(
        case.name == slug,
        "name {:?} is not the file name without its NN- prefix ({slug:?})",
        case.name
    );
    ensure!(
        case.upstream.is_some() != case.custom.is_some(),
        "exactly one of `upstream` and `custom` must be set"
    );
    ensure!(!case.steps.is_empty(), "no steps");
    Ok(case)
}

/// A pod of the base cluster.
#[derive(Clone, Debug)]
pub struct BasePod {
    /// `ns/pod`.
    pub label: String,
    /// `ns.pod`, its name in the topology.
    pub topo_name: String,
    /// Node name.
    pub node: String,
    /// IPv4 address.
    pub ip4: Ipv4Addr,
    /// IPv6 address.
    pub ip6: Ipv6Addr,
    /// A hostNetwork pod: its addresses are its node's, its servers run in the node's
    /// namespace, and it is never a probe source.
    pub host_network: bool,
}

impl BasePod {
    /// The pod's address of a family.
    pub fn ip(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::V4(self.ip4),
            Family::V6 => IpAddr::V6(self.ip6),
        }
    }
}

/// The base cluster: its objects, pods (in file order), nodes and ports.
#[derive(Clone, Debug)]
pub struct Base {
    /// Namespace objects.
    pub namespaces: Vec<Value>,
    /// Pod objects.
    pub pods: Vec<Value>,
    /// Node objects (optional; their InternalIPs must be the topology's node addresses).
    pub node_objects: Vec<Value>,
    /// The pods with their addresses.
    pub pod_info: Vec<BasePod>,
    /// Nodes with their IPv4 /24 and IPv6 /64 pod networks, in order of first appearance of
    /// a (non-hostNetwork) pod.
    pub nodes: Vec<(String, String, String)>,
    /// Container port numbers of the (non-hostNetwork) pods.
    pub ports: BTreeSet<u16>,
    /// Container port numbers of the hostNetwork pods, served in their nodes' namespaces.
    pub host_ports: BTreeSet<u16>,
    /// A `denied` probe must time out (a silent drop); `refused` counts as a mismatch, as in
    /// the network-policy-api conformance suite. Off by default.
    pub drops_must_time_out: bool,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn net_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

impl Base {
    /// Loads `cluster.yaml`: Namespaces and dual-stack Pods on named nodes.
    pub fn load(path: &Path) -> Result<Base> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(&text, yaml_options())
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let mut base = Base {
            namespaces: Vec::new(),
            pods: Vec::new(),
            node_objects: Vec::new(),
            pod_info: Vec::new(),
            nodes: Vec::new(),
            ports: BTreeSet::new(),
            host_ports: BTreeSet::new(),
            drops_must_time_out: false,
        };
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            match str_at(&doc, &["kind"]) {
                Some("Namespace") => base.namespaces.push(doc),
                Some("Node") => base.node_objects.push(doc),
                Some("Pod") => {
                    let ns = str_at(&doc, &["metadata", "namespace"]).unwrap_or("default");
                    let name = str_at(&doc, &["metadata", "name"]).context("pod without name")?;
                    let label = format!("{ns}/{name}");
                    let node = str_at(&doc, &["spec", "nodeName"])
                        .with_context(|| format!("pod {label}: no spec.nodeName"))?
                        .to_owned();
                    let ips: Vec<IpAddr> = doc
                        .pointer("/status/podIPs")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p.get("ip")?.as_str()?.parse().ok())
                        .collect();
                    let ip4 = ips.iter().find_map(|ip| match ip {
                        IpAddr::V4(v) => Some(*v),
                        IpAddr::V6(_) => None,
                    });
                    let ip6 = ips.iter().find_map(|ip| match ip {
                        IpAddr::V6(v) => Some(*v),
                        IpAddr::V4(_) => None,
                    });
                    let (Some(ip4), Some(ip6)) = (ip4, ip6) else {
                        bail!("pod {label}: needs an IPv4 and an IPv6 address in status.podIPs");
                    };
                    let host_network = doc
                        .pointer("/spec/hostNetwork")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let ports = if host_network {
                        &mut base.host_ports
                    } else {
                        &mut base.ports
                    };
                    for c in doc
                        .pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        for p in c
                            .get("ports")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            if let Some(n) = p.get("containerPort").and_then(Value::as_u64) {
                                ports.insert(u16::try_from(n)?);
                            }
                        }
                    }
                    let (n4, n6) = (net_of(IpAddr::V4(ip4)), net_of(IpAddr::V6(ip6)));
                    match base.nodes.iter().find(|(n, _, _)| *n == node) {
                        _ if host_network => {}
                        Some((_, c4, c6)) => ensure!(
                            *c4 == n4 && *c6 == n6,
                            "pod {label}: addresses outside node {node}'s networks {c4} {c6}"
                        ),
                        None => base.nodes.push((node.clone(), n4, n6)),
                    }
                    base.pod_info.push(BasePod {
                        topo_name: format!("{ns}.{name}"),
                        label,
                        node,
                        ip4,
                        ip6,
                        host_network,
                    });
                    base.pods.push(doc);
                }
                other => bail!("{}: unexpected kind {other:?}", path.display()),
            }
        }
        ensure!(!base.pod_info.is_empty(), "{}: no pods", path.display());
        for p in base.pod_info.iter().filter(|p| p.host_network) {
            ensure!(
                base.nodes.iter().any(|(n, _, _)| *n == p.node),
                "{}: hostNetwork pod {} on node {} that runs no other pod",
                path.display(),
                p.label,
                p.node
            );
        }
        Ok(base)
    }

    fn pod(&self, label: &str) -> Result<&BasePod> {
        self.pod_info
            .iter()
            .find(|p| p.label == label)
            .ok_or_else(|| anyhow!("no pod {label:?} in the base cluster"))
    }

    /// A network of the family, as long as a pod network, that holds no pod.
    fn other_net(&self, family: Family) -> Result<String> {
        for k in (200..=255u16).rev() {
            let (net, ip): (String, IpAddr) = match family {
                Family::V4 => (
                    format!("10.244.{k}.0/24"),
                    IpAddr::V4(Ipv4Addr::new(10, 244, k as u8, 0)),
                ),
                Family::V6 => (
                    format!("fd00:10:244:{k:x}::/64"),
                    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x10, 0x244, k, 0, 0, 0, 0)),
                ),
            };
            if self
                .pod_info
                .iter()
                .all(|p| net_of(p.ip(family)) != net_of(ip))
            {
                return Ok(net);
            }
        }
        bail!("no free network for {{{{other-net}}}}")
    }

    /// Replaces `{{ip ns/pod}}`, `{{cidr ns/pod}}`, `{{net ns/pod}}` and
    /// `{{other-net ns/pod}}` for one family.
    pub fn substitute(&self, text: &str, family: Family) -> Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .ok_or_else(|| anyhow!("unterminated template in {:?}", &rest[start..]))?;
            let inner = rest[start + 2..start + end].trim();
            let (func, arg) = inner
                .split_once(char::is_whitespace)
                .ok_or_else(|| anyhow!("template {{{{{inner}}}}} needs a pod"))?;
            let pod = self.pod(arg.trim())?;
            let ip = pod.ip(family);
            let host = if family == Family::V4 { 32 } else { 128 };
            out.push_str(&match func {
                "ip" => ip.to_string(),
                "cidr" => format!("{ip}/{host}"),
                "net" => net_of(ip),
                "other-net" => self.other_net(family)?,
                _ => bail!("unknown template function {func:?}"),
            });
            rest = &rest[start + end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn key_of(doc: &Value) -> (String, String) {
    (
        str_at(doc, &["metadata", "namespace"])
            .unwrap_or("default")
            .to_owned(),
        str_at(doc, &["metadata", "name"]).unwrap_or("").to_owned(),
    )
}

/// The kinds of policy objects a case creates, replaces and deletes.
pub const POLICY_KINDS: [&str; 2] = ["NetworkPolicy", "ClusterNetworkPolicy"];

/// `ClusterNetworkPolicy` is cluster-scoped: its key has no namespace.
fn policy_key(kind: &str, namespace: Option<&str>, name: &str) -> (String, String, String) {
    let ns = match kind {
        "ClusterNetworkPolicy" => "",
        _ => namespace.unwrap_or("default"),
    };
    (kind.to_owned(), ns.to_owned(), name.to_owned())
}

fn policy_key_of(doc: &Value) -> (String, String, String) {
    policy_key(
        str_at(doc, &["kind"]).unwrap_or(""),
        str_at(doc, &["metadata", "namespace"]),
        str_at(doc, &["metadata", "name"]).unwrap_or(""),
    )
}

/// The objects a case has built so far.
#[derive(Clone, Debug)]
struct World {
    namespaces: Vec<Value>,
    pods: Vec<Value>,
    nodes: Vec<Value>,
    policies: Vec<Value>,
}

impl World {
    fn new(base: &Base) -> World {
        World {
            namespaces: base.namespaces.clone(),
            pods: base.pods.clone(),
            nodes: base.node_objects.clone(),
            policies: Vec::new(),
        }
    }

    /// Whether the reference evaluator models everything in the world (it knows Namespaces,
    /// Pods and NetworkPolicies only).
    fn oracle_models(&self) -> bool {
        self.nodes.is_empty()
            && self
                .policies
                .iter()
                .all(|p| str_at(p, &["kind"]) == Some("NetworkPolicy"))
    }

    fn apply(&mut self, step: &Step, base: &Base, family: Family) -> Result<()> {
        for d in &step.delete {
            ensure!(
                POLICY_KINDS.contains(&d.kind.as_str()),
                "delete: only {POLICY_KINDS:?} are supported, not {}",
                d.kind
            );
            ensure!(
                d.kind != "ClusterNetworkPolicy" || d.namespace.is_none(),
                "delete: a ClusterNetworkPolicy is cluster-scoped (no namespace)"
            );
            let key = policy_key(&d.kind, d.namespace.as_deref(), &d.name);
            let before = self.policies.len();
            self.policies.retain(|p| policy_key_of(p) != key);
            ensure!(
                self.policies.len() < before,
                "delete: no {} {}/{}",
                key.0,
                key.1,
                key.2
            );
        }
        let Some(objects) = &step.objects else {
            return Ok(());
        };
        let text = base.substitute(objects, family)?;
        let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(&text, yaml_options())
            .map_err(|e| anyhow!("objects: {e}"))?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let key = key_of(&doc);
            let labels = doc
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(Value::Null);
            let relabel = |list: &mut Vec<Value>, cluster_scoped: bool| -> Result<()> {
                let target = list
                    .iter_mut()
                    .find(|o| {
                        if cluster_scoped {
                            key_of(o).1 == key.1
                        } else {
                            key_of(o) == key
                        }
                    })
                    .ok_or_else(|| anyhow!("relabel: no base object {}/{}", key.0, key.1))?;
                let meta = target
                    .get_mut("metadata")
                    .and_then(Value::as_object_mut)
                    .ok_or_else(|| anyhow!("base object without metadata"))?;
                if labels.is_null() {
                    meta.remove("labels");
                } else {
                    meta.insert("labels".into(), labels.clone());
                }
                Ok(())
            };
            match str_at(&doc, &["kind"]) {
                Some(kind) if POLICY_KINDS.contains(&kind) => {
                    let key = policy_key_of(&doc);
                    match self.policies.iter_mut().find(|p| policy_key_of(p) == key) {
                        Some(p) => *p = doc,
                        None => self.policies.push(doc),
                    }
                }
                Some("Namespace") => relabel(&mut self.namespaces, true)?,
                Some("Pod") => relabel(&mut self.pods, false)?,
                Some("Node") => relabel(&mut self.nodes, true)?,
                other => bail!("objects: unexpected kind {other:?}"),
            }
        }
        Ok(())
    }

    fn docs(&self) -> impl Iterator<Item = &Value> {
        self.namespaces
            .iter()
            .chain(&self.pods)
            .chain(&self.nodes)
            .chain(&self.policies)
    }

    fn oracle_cluster(&self) -> Result<oracle::Cluster> {
        let mut c = oracle::Cluster::default();
        for d in self.docs() {
            c.add_document(d.clone())
                .map_err(|e| anyhow!("oracle: {e}"))?;
        }
        Ok(c)
    }

    /// Sets every probe's `explained` to what `nftpol explain` answers for its flow (through
    /// a Service: the flow to the backend, as the ruleset sees it after DNAT).
    fn explain_probes(&self, base: &Base, probes: &mut [PlannedProbe]) -> Result<()> {
        let (cluster, _) = nftpol::core::k8s::to_cluster(&self.objects("explain"));
        let graph = nftpol::core::graph::SelectorGraph::build(&cluster);
        let pod = |i: usize| -> Result<nftpol::core::explain::Endpoint> {
            let label = &base.pod_info[i].label;
            let (ns, name) = label
                .split_once('/')
                .ok_or_else(|| anyhow!("pod label {label:?} is not ns/name"))?;
            Ok(nftpol::core::explain::Endpoint::Pod(
                nftpol::core::model::ObjectRef::new(ns, name),
            ))
        };
        let askable = |p: &PlannedProbe| {
            let hairpin = p.via.is_some() && p.from == p.to;
            !(base.pod_info[p.to].host_network || hairpin)
        };
        for p in probes.iter_mut().filter(|p| askable(p)) {
            let q = nftpol::core::explain::Query {
                from: pod(p.from)?,
                to: pod(p.to)?,
                port: nftpol::core::explain::PortArg {
                    port: nftpol::core::explain::PortSpec::Number(p.port),
                    protocol: Some(match p.proto {
                        Proto::Tcp => nftpol::core::model::Protocol::Tcp,
                        Proto::Udp => nftpol::core::model::Protocol::Udp,
                        Proto::Sctp => nftpol::core::model::Protocol::Sctp,
                    }),
                },
                family: Some(match p.family {
                    Family::V4 => nftpol::core::model::Family::V4,
                    Family::V6 => nftpol::core::model::Family::V6,
                }),
            };
            let ex = nftpol::core::explain::explain(&cluster, &graph, &q)
                .map_err(|e| anyhow!("explain {q:?}: {e}"))?;
            p.explained = Some(ex.verdict == nftpol::core::explain::Verdict::Allowed);
        }
        Ok(())
    }

    /// The objects as nftpol loads them.
    fn objects(&self, source: &str) -> nftpol::core::k8s::Objects {
        let text: Vec<String> = self.docs().map(Value::to_string).collect();
        let mut objs = nftpol::core::k8s::Objects::default();
        let mut diags = Vec::new();
        nftpol::core::k8s::parse_into(&text.join("\n"), source, &mut objs, &mut diags);
        objs
    }

    /// Each node's ruleset, as `nftpol compile --node <node>` prints it for these objects.
    fn rulesets(&self, base: &Base, source: &str) -> Vec<(String, String)> {
        let objs = self.objects(source);
        base.nodes
            .iter()
            .map(|(node, _, _)| {
                let out = nftpol::core::compile::compile_objects(
                    &objs,
                    &nftpol::core::compile::Options {
                        node: Some(node.clone()),
                        ..Default::default()
                    },
                );
                (
                    node.clone(),
                    nftpol::core::nft::render::script(&out.ruleset),
                )
            })
            .collect()
    }
}

/// A Service of the test bed: ClusterIPs (both families) port 80 → a backend pod's port 80.
#[derive(Clone, Debug)]
pub struct Service {
    /// IPv4 ClusterIP.
    pub ip4: Ipv4Addr,
    /// IPv6 ClusterIP.
    pub ip6: Ipv6Addr,
    /// Index of the backend in [`Base::pod_info`].
    pub backend: usize,
}

/// The port every Service exposes and forwards to.
pub const SERVICE_PORT: u16 = 80;

impl Service {
    fn ip(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::V4(self.ip4),
            Family::V6 => IpAddr::V6(self.ip6),
        }
    }
}

/// The test bed's Services. For the NetworkPolicy base (it has `x/a`): two, one to `x/a` and
/// one to the first pod on another node. Any other base: one per non-hostNetwork pod, in pod
/// order, at 10.96.1.(10+i) and fd00:10:96::1:(10+i).
pub fn services(base: &Base) -> Vec<Service> {
    let Some(first) = base.pod_info.iter().position(|p| p.label == "x/a") else {
        return base
            .pod_info
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.host_network)
            .enumerate()
            .map(|(k, (i, _))| {
                let host = 10 + k as u16;
                Service {
                    ip4: Ipv4Addr::new(10, 96, 1, host as u8),
                    ip6: Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 1, host),
                    backend: i,
                }
            })
            .collect();
    };
    let mut out = vec![Service {
        ip4: Ipv4Addr::new(10, 96, 0, 10),
        ip6: "fd00:10:96::10".parse().unwrap(),
        backend: first,
    }];
    if let Some(other) = base
        .pod_info
        .iter()
        .position(|p| p.node != base.pod_info[first].node)
    {
        out.push(Service {
            ip4: Ipv4Addr::new(10, 96, 0, 11),
            ip6: "fd00:10:96::11".parse().unwrap(),
            backend: other,
        });
    }
    out
}

/// One planned probe: from a pod to a pod, directly or through a Service.
#[derive(Clone, Debug)]
pub struct PlannedProbe {
    /// Source pod (index into [`Base::pod_info`]).
    pub from: usize,
    /// Destination pod (the backend when `via` is set).
    pub to: usize,
    /// Through this Service (index into [`services`]).
    pub via: Option<usize>,
    /// Family.
    pub family: Family,
    /// Protocol.
    pub proto: Proto,
    /// Destination port.
    pub port: u16,
    /// The case's expectation.
    pub expected: bool,
    /// What `nftpol explain` says about this flow (allowed?), checked against the real packet;
    /// `None` where explain cannot name the flow (a hostNetwork destination is a node address;
    /// a hairpin through a Service is not the pod-to-itself flow explain would answer for).
    pub explained: Option<bool>,
}

/// One step of a run: the rulesets to load and the probes to run.
#[derive(Clone, Debug)]
pub struct StepPlan {
    /// `step N (description)`.
    pub label: String,
    /// `(node, nft script)`.
    pub rulesets: Vec<(String, String)>,
    /// Probes of the step.
    pub probes: Vec<PlannedProbe>,
}

/// A case played once for a set of families (all steps, starting from the base cluster).
#[derive(Clone, Debug)]
pub struct RunPlan {
    /// Steps in order.
    pub steps: Vec<StepPlan>,
}

/// Everything needed to play one case, and what planning found.
#[derive(Clone, Debug)]
pub struct CasePlan {
    /// Case name.
    pub name: String,
    /// Case file.
    pub file: PathBuf,
    /// Runs (one per family when the objects use templates, else one for all families).
    pub runs: Vec<RunPlan>,
    /// Problems with the case file itself (parse errors, bad templates, conflicting lines).
    pub errors: Vec<String>,
    /// Probes whose expectation disagrees with the reference evaluator.
    pub oracle_disagreements: Vec<String>,
}

fn verdict_word(b: bool) -> &'static str {
    if b { "allowed" } else { "denied" }
}

/// Plans a case (compiles every step, lists every probe, checks expectations with the oracle).
pub fn plan_case(path: &Path, case: Result<Case>, base: &Base, svcs: &[Service]) -> CasePlan {
    let mut plan = CasePlan {
        name: path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into(),
        file: path.to_path_buf(),
        runs: Vec::new(),
        errors: Vec::new(),
        oracle_disagreements: Vec::new(),
    };
    let case = match case {
        Ok(c) => c,
        Err(e) => {
            plan.errors.push(format!("{}: {e:#}", path.display()));
            return plan;
        }
    };
    plan.name = case.name.clone();
    if let Err(e) = plan_runs(&case, base, svcs, &mut plan) {
        plan.errors.push(format!("{}: {e:#}", path.display()));
    }
    plan
}

fn plan_runs(case: &Case, base: &Base, svcs: &[Service], plan: &mut CasePlan) -> Result<()> {
    let families: Vec<Family> = match &case.families {
        Some(f) => f.iter().map(|f| f.family()).collect(),
        None => Family::ALL.to_vec(),
    };
    ensure!(!families.is_empty(), "families: empty");
    let templated = case
        .steps
        .iter()
        .any(|s| s.objects.as_deref().is_some_and(|o| o.contains("{{")));
    let groups: Vec<Vec<Family>> = if templated {
        families.iter().map(|f| vec![*f]).collect()
    } else {
        vec![families.clone()]
    };
    for run_families in groups {
        let mut world = World::new(base);
        let mut steps = Vec::new();
        for (k, step) in case.steps.iter().enumerate() {
            let label = match &step.description {
                Some(d) => format!("step {} ({d})", k + 1),
                None => format!("step {}", k + 1),
            };
            // Objects are the same for every family of an untemplated run.
            world
                .apply(step, base, run_families[0])
                .with_context(|| label.clone())?;
            let rulesets = world.rulesets(base, &format!("{}/{label}", case.name));
            let cluster = if world.oracle_models() {
                Some(world.oracle_cluster().with_context(|| label.clone())?)
            } else {
                None
            };
            let mut probes =
                plan_probes(step, base, svcs, &run_families).with_context(|| label.clone())?;
            world
                .explain_probes(base, &mut probes)
                .with_context(|| label.clone())?;
            let oracle_probes = probes
                .iter()
                .filter(|p| p.via.is_none() && !base.pod_info[p.to].host_network);
            for p in oracle_probes {
                let Some(cluster) = &cluster else { break };
                let (a, b) = (&base.pod_info[p.from], &base.pod_info[p.to]);
                let flow = oracle::Flow {
                    src: a.ip(p.family),
                    dst: b.ip(p.family),
                    proto: oracle::Proto::from(p.proto),
                    port: p.port,
                };
                let says = oracle::allowed(cluster, &flow);
                if says != p.expected {
                    plan.oracle_disagreements.push(format!(
                        "{} {label}: {} -> {} {}/{} {}: case says {}, oracle says {}",
                        case.name,
                        a.label,
                        b.label,
                        p.proto,
                        p.port,
                        p.family,
                        verdict_word(p.expected),
                        verdict_word(says)
                    ));
                }
            }
            steps.push(StepPlan {
                label,
                rulesets,
                probes,
            });
        }
        plan.runs.push(RunPlan { steps });
    }
    Ok(())
}

/// (from, to, via, family, proto, port) of a planned probe.
type ProbeKey = (usize, usize, Option<usize>, Family, Proto, u16);

/// The (from, to, via) triples a probe group covers, in a fixed order: every non-hostNetwork
/// pod to every other (and through every Service when the group probes [`SERVICE_PORT`]), or
/// only its `pairs`.
fn group_triples(
    group: &ProbeGroup,
    pods: &[BasePod],
    svcs: &[Service],
) -> Result<Vec<(usize, usize, Option<usize>)>> {
    let mut triples = Vec::new();
    let Some(pairs) = &group.pairs else {
        for from in (0..pods.len()).filter(|&i| !pods[i].host_network) {
            for to in (0..pods.len()).filter(|&i| !pods[i].host_network) {
                triples.push((from, to, None));
            }
            if group.ports.contains(&SERVICE_PORT) {
                for (s, svc) in svcs.iter().enumerate() {
                    // A client reaching itself through a Service is a hairpin; every pair would
                    // need its own expectation: only `pairs` probe it.
                    if svc.backend != from {
                        triples.push((from, svc.backend, Some(s)));
                    }
                }
            }
        }
        return Ok(triples);
    };
    let matching = |pattern: &str| -> Vec<usize> {
        (0..pods.len())
            .filter(|&i| pattern_matches(pattern, &pods[i].label))
            .collect()
    };
    for pair in pairs {
        for from in matching(&pair.from) {
            ensure!(
                !pods[from].host_network,
                "pairs: source {} is a hostNetwork pod",
                pods[from].label
            );
            for to in matching(&pair.to) {
                let via = match pair.via {
                    None => None,
                    Some(Via::Service) => {
                        ensure!(
                            group.ports.iter().all(|&p| p == SERVICE_PORT),
                            "pairs: a Service serves port {SERVICE_PORT} only"
                        );
                        let s = svcs.iter().position(|s| s.backend == to);
                        let s = s.ok_or_else(|| {
                            anyhow!("pairs: no Service in front of {}", pods[to].label)
                        })?;
                        Some(s)
                    }
                };
                triples.push((from, to, via));
            }
        }
    }
    Ok(triples)
}

fn plan_probes(
    step: &Step,
    base: &Base,
    svcs: &[Service],
    families: &[Family],
) -> Result<Vec<PlannedProbe>> {
    let mut out = Vec::new();
    // Two groups must not disagree about the same probe.
    let mut seen: BTreeMap<ProbeKey, bool> = BTreeMap::new();
    let pods = &base.pod_info;
    for group in &step.probes {
        group.check_patterns(pods)?;
        let triples = group_triples(group, pods, svcs)?;
        for &family in families {
            for proto in group.protocols.iter().map(|p| p.proto()) {
                for &port in &group.ports {
                    for &(from, to, via) in &triples {
                        if via.is_some() && port != SERVICE_PORT {
                            continue;
                        }
                        let served = if pods[to].host_network {
                            &base.host_ports
                        } else {
                            &base.ports
                        };
                        ensure!(
                            served.contains(&port),
                            "port {port} is not served by {}",
                            pods[to].label
                        );
                        let expected = group.expected(&pods[from].label, &pods[to].label);
                        if let Some(prev) =
                            seen.insert((from, to, via, family, proto, port), expected)
                        {
                            ensure!(
                                prev == expected,
                                "two probe groups disagree on {} -> {} {proto}/{port} {family}",
                                pods[from].label,
                                pods[to].label
                            );
                            continue;
                        }
                        out.push(PlannedProbe {
                            from,
                            to,
                            via,
                            family,
                            proto,
                            port,
                            expected,
                            explained: None, // set by `World::explain_probes`
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// One probe that did not do what the case expects.
#[derive(Clone, Debug)]
pub struct Mismatch {
    /// Case name.
    pub case: String,
    /// Step label.
    pub step: String,
    /// Source pod label.
    pub from: String,
    /// Destination pod label.
    pub to: String,
    /// Service ClusterIP when probed through a Service.
    pub via: Option<IpAddr>,
    /// Protocol.
    pub proto: Proto,
    /// Port.
    pub port: u16,
    /// Family.
    pub family: Family,
    /// The expectation.
    pub expected: bool,
    /// What happened.
    pub got: Outcome,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let via = match self.via {
            Some(ip) => format!(" (via Service {ip}:{SERVICE_PORT})"),
            None => String::new(),
        };
        write!(
            f,
            "{} {}: {} -> {}{via} {}/{} {}: expected {}, got {}",
            self.case,
            self.step,
            self.from,
            self.to,
            self.proto,
            self.port,
            self.family,
            verdict_word(self.expected),
            self.got
        )
    }
}

/// What playing one case on one shape did.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// Case name.
    pub name: String,
    /// Probes run.
    pub probes: usize,
    /// Probes that differed from the expectation.
    pub mismatches: Vec<Mismatch>,
    /// Probes whose real-packet result differs from what `nftpol explain` says
    /// (`expected` holds explain's answer).
    pub explain_mismatches: Vec<Mismatch>,
    /// Harness errors (a ruleset that did not load, ...).
    pub errors: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

impl CaseReport {
    /// No mismatch and no error.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.explain_mismatches.is_empty() && self.errors.is_empty()
    }
}

/// What playing every case on one shape did.
#[derive(Debug)]
pub struct ShapeReport {
    /// Shape.
    pub shape: Shape,
    /// Topology build time (including the services).
    pub build_time: Duration,
    /// Per case, in order.
    pub cases: Vec<CaseReport>,
    /// Wall time of the whole shape.
    pub elapsed: Duration,
}

/// A live topology of the base cluster with its Services.
pub struct Bed {
    topo: Topology,
    base: Base,
    svcs: Vec<Service>,
}

impl Bed {
    /// Builds the base cluster on `shape` (pods `ns.pod`, servers on `ports`) and installs the
    /// Services on every node for TCP, UDP and SCTP.
    pub fn build(
        shape: Shape,
        base: &Base,
        svcs: &[Service],
        ports: &[u16],
        timeout: Duration,
    ) -> Result<Bed> {
        let mut spec = TopoSpec::new().ports(ports);
        for (node, c4, c6) in &base.nodes {
            spec = spec.node(node, c4, c6);
        }
        for p in base.pod_info.iter().filter(|p| !p.host_network) {
            spec = spec.pod(
                &p.topo_name,
                &p.node,
                &p.ip4.to_string(),
                &p.ip6.to_string(),
            );
        }
        let mut topo = Topology::build(shape, &spec)?;
        topo.set_timeout(timeout);
        // hostNetwork pods: their addresses must be their nodes' (the Node objects' too), and
        // their servers run in the node namespaces.
        let mut served_nodes: BTreeSet<&str> = BTreeSet::new();
        for p in base.pod_info.iter().filter(|p| p.host_network) {
            for family in Family::ALL {
                ensure!(
                    topo.node_ip(&p.node, family) == p.ip(family),
                    "hostNetwork pod {}: {} is not node {}'s address {}",
                    p.label,
                    p.ip(family),
                    p.node,
                    topo.node_ip(&p.node, family)
                );
            }
            served_nodes.insert(&p.node);
        }
        for node in &base.node_objects {
            let name = str_at(node, &["metadata", "name"]).unwrap_or("");
            let addrs = node
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
                .filter_map(|a| a.get("address")?.as_str()?.parse::<IpAddr>().ok());
            for ip in addrs {
                ensure!(
                    topo.nodes().contains(&name) && topo.node_ip(name, Family::of(ip)) == ip,
                    "Node {name}: InternalIP {ip} is not the topology's address of that node"
                );
            }
        }
        let host_ports: Vec<u16> = base.host_ports.iter().copied().collect();
        for node in served_nodes {
            topo.serve_node(node, &host_ports)?;
        }
        for svc in svcs {
            let backend = &base.pod_info[svc.backend];
            for family in Family::ALL {
                for proto in Proto::ALL {
                    topo.add_service_everywhere(
                        svc.ip(family),
                        SERVICE_PORT,
                        proto,
                        backend.ip(family),
                        SERVICE_PORT,
                    )?;
                }
            }
        }
        Ok(Bed {
            topo,
            base: base.clone(),
            svcs: svcs.to_vec(),
        })
    }

    /// Plays one case: every run, every step in sequence, rulesets replaced in place.
    pub fn play(&self, plan: &CasePlan) -> CaseReport {
        let start = Instant::now();
        let mut report = CaseReport {
            name: plan.name.clone(),
            probes: 0,
            mismatches: Vec::new(),
            explain_mismatches: Vec::new(),
            errors: Vec::new(),
            elapsed: Duration::ZERO,
        };
        for run in &plan.runs {
            for step in &run.steps {
                if let Err(e) = self.play_step(plan, step, &mut report) {
                    report
                        .errors
                        .push(format!("{} {}: {e:#}", plan.name, step.label));
                }
            }
        }
        report.elapsed = start.elapsed();
        report
    }

    fn play_step(&self, plan: &CasePlan, step: &StepPlan, report: &mut CaseReport) -> Result<()> {
        for (node, text) in &step.rulesets {
            self.topo.load_ruleset(node, text)?;
        }
        let pods = &self.base.pod_info;
        let specs: Vec<ProbeSpec> = step
            .probes
            .iter()
            .map(|p| {
                let dst = match p.via {
                    Some(s) => self.svcs[s].ip(p.family),
                    None => pods[p.to].ip(p.family),
                };
                ProbeSpec::pod(&pods[p.from].topo_name, dst, p.proto, p.port)
            })
            .collect();
        let outcomes = self.topo.probe_outcomes(&specs);
        report.probes += specs.len();
        for ((p, spec), got) in step.probes.iter().zip(&specs).zip(outcomes) {
            let mismatch = |expected: bool| Mismatch {
                case: plan.name.clone(),
                step: step.label.clone(),
                from: pods[p.from].label.clone(),
                to: pods[p.to].label.clone(),
                via: p.via.map(|_| spec.to),
                proto: p.proto,
                port: p.port,
                family: p.family,
                expected,
                got: got.clone(),
            };
            let refused_deny =
                self.base.drops_must_time_out && !p.expected && matches!(got, Outcome::Refused);
            if got.reached() != p.expected || refused_deny {
                report.mismatches.push(mismatch(p.expected));
            }
            if let Some(explained) = p.explained.filter(|&e| e != got.reached()) {
                report.explain_mismatches.push(mismatch(explained));
            }
        }
        Ok(())
    }
}

/// Builds one bed for `shape` and plays every planned case on it, in order.
pub fn run_shape(
    shape: Shape,
    base: &Base,
    svcs: &[Service],
    ports: &[u16],
    plans: &[CasePlan],
    timeout: Duration,
) -> Result<ShapeReport> {
    let start = Instant::now();
    let bed = Bed::build(shape, base, svcs, ports, timeout)
        .with_context(|| format!("building the {shape} conformance bed"))?;
    let build_time = start.elapsed();
    let cases = plans.iter().map(|p| bed.play(p)).collect();
    Ok(ShapeReport {
        shape,
        build_time,
        cases,
        elapsed: start.elapsed(),
    })
}
