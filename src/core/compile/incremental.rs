//! Incremental compile: a pod added, deleted, relabelled or readdressed
//! becomes an edit of the previous compile's ruleset, at the cost of the
//! selectors and policies of the pod's own namespace, instead of a new
//! selector graph and a new ruleset.
//!
//! The full compile ([`super::compile`]) stays the reference: the index is
//! built from its result (the compiler records which selector, named port or
//! peer each pod-dependent set holds, [`SetSource`]), and every change this
//! module cannot prove element-only falls back to it. A pod contributes only
//! elements:
//!
//! - `self-v4/v6` and the new-pod guard's `local-pods-v4/v6` (enforced pods);
//! - the dispatch maps `ingress/egress-pods-*` (enforced pods that some
//!   policy isolates): address → its group chain, which must already exist;
//! - `pods-…` peer sets (every pod the selector matches, cluster-wide);
//! - named-port sets (`addr . proto . port`: enforced pods for ingress, the
//!   peer's pods for egress);
//! - the drop-log index's address → pod (when some group logs).
//!
//! When a pod's isolating policies form a group that has no chain yet, or
//! the last pod of a group leaves it, the group's chain comes or goes, with
//! the policy chains only it jumps to and the sets only those name
//! ([`Path::Partial`]): the compiler builds just those chains (the same
//! code as the full compile, members found by a scan instead of the
//! selector graph, revocation applied per chain), and they are put where
//! the full compile puts them (group, audit group, policy chains, each
//! section sorted by name). The result names what changed ([`Touched`]),
//! so the enforcer stages the change without copying or comparing whole
//! rulesets.
//!
//! A NetworkPolicy added, deleted or changed takes the policy step first
//! (`incremental/policies.rs`): its chains are rebuilt while some group
//! still jumps to them, the pods of its namespace whose isolating policies
//! change move to their new groups (group chains, policy chains and sets
//! coming and going as on the partial path), then the pods of the same
//! batch are applied as above.
//!
//! Falls back (the [`Path::Full`] reason says why) when anything but pods
//! and NetworkPolicies changed (namespaces, ClusterNetworkPolicies, nodes,
//! options);
//! when the cluster has ClusterNetworkPolicies (the tiered layout is not
//! indexed); when a group coming or going would turn the drop-log index's
//! pod addresses on or off; when a touched address belongs to more than one
//! pod before or after (elements are keyed by address); and when the change
//! list does not account for the model's pod count.
//!
//! Every collection of elements in [`Ruleset`] is sorted (`BTreeSet`,
//! `BTreeMap`), so removing a pod's old elements and adding its new ones
//! yields exactly the full compile's ruleset; `tests/incremental.rs` checks
//! the rendering byte for byte after every event of random sequences.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use super::{Compiled, Options};
use crate::core::diag::Diagnostic;
use crate::core::graph::SelectorGraph;
use crate::core::model::{
    Cluster, Direction, Family, NamespaceScope, ObjectRef, Peer, Pod, PodMatch, Protocol, Range,
    Selector,
};
use crate::core::nft::delta::{Edits, Touched};
use crate::core::nft::names;
use crate::core::nft::ruleset::{Element, Ruleset};

/// What a pod-dependent set holds (recorded by the compiler for the index).
#[derive(Debug, Clone)]
pub(super) enum SetSource {
    /// `pods-…`: addresses of the pods a peer selector matches.
    Pods(PodMatch, Family),
    /// A named port of the enforced pods (ingress).
    LocalNamedPort(String, Protocol, Family),
    /// A named port of a peer's pods (egress; `None`: every pod).
    PeerNamedPort(Option<Peer>, String, Protocol, Family),
}

/// Which path produced a ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The previous ruleset, edited by the changed pods' elements.
    Incremental,
    /// The previous ruleset, edited by the changed pods' elements and by
    /// the group chains (with the policy chains and sets only they use)
    /// that appeared or went with them, or by the changed NetworkPolicies'
    /// chains and groups.
    Partial,
    /// A full compile, and why.
    Full(&'static str),
}

impl Path {
    /// `incremental` or `full` (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Incremental => "incremental",
            Path::Partial => "partial",
            Path::Full(_) => "full",
        }
    }
}

/// What changed in the model since the previous compile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Pods added, removed or changed.
    pub pods: BTreeSet<ObjectRef>,
    /// NetworkPolicies added, removed or changed.
    pub policies: BTreeSet<ObjectRef>,
    /// Anything else changed (namespaces, ClusterNetworkPolicies, nodes).
    pub other: bool,
}

/// The compiler with memory: the previous compile and its index. Start with
/// [`State::default`]; the first compile is full.
#[derive(Debug, Default)]
pub struct State {
    index: Option<Index>,
}

impl State {
    /// The ruleset for `cluster`, incrementally from the previous one when
    /// `changes` allow it, else by a full compile (which rebuilds the
    /// index). `diagnostics` are the conversion's, as for
    /// [`super::compile_cluster`]; the result equals its result.
    pub fn compile(
        &mut self,
        cluster: &Cluster,
        diagnostics: Vec<Diagnostic>,
        changes: &Changes,
        opts: &Options,
    ) -> (Compiled, Path) {
        let (out, path) = self.compile_edits(cluster, diagnostics, changes, opts);
        let current = || self.current().expect("an incremental step: indexed");
        (out.into_compiled(current), path)
    }

    /// [`State::compile`], giving the incremental path's result as edits of
    /// the previous ruleset instead of a copy of the whole new one (the
    /// agent's path: a node's table costs milliseconds to copy and to
    /// compare).
    pub fn compile_edits(
        &mut self,
        cluster: &Cluster,
        diagnostics: Vec<Diagnostic>,
        changes: &Changes,
        opts: &Options,
    ) -> (Output, Path) {
        let reason = match self.index.as_mut() {
            None => "no index (first compile, or ClusterNetworkPolicies)",
            Some(_) if changes.other => "namespaces, ClusterNetworkPolicies or nodes changed",
            Some(ix) if !ix.same_options(opts) => "options changed",
            Some(ix) => match ix.update_all(cluster, changes) {
                Ok(Step::Structural) => {
                    let out = Reshaped {
                        touched: std::mem::take(&mut ix.touched),
                        diagnostics,
                        enforced_pods: ix.compiled.enforced_pods,
                        drop_log: Arc::clone(&ix.drop_log),
                    };
                    return (Output::Reshaped(out), Path::Partial);
                }
                Ok(Step::Elements(edits)) => {
                    let out = Edited {
                        edits,
                        diagnostics,
                        enforced_pods: ix.compiled.enforced_pods,
                        drop_log: Arc::clone(&ix.drop_log),
                    };
                    return (Output::Edited(out), Path::Incremental);
                }
                Err(reason) => reason,
            },
        };
        // The old index is of no use to a full compile: freed first, its
        // copies of the ruleset and of the pods are not held beside the new.
        self.index = None;
        let graph = SelectorGraph::build(cluster);
        let (mut out, recorded) = super::compile_recording(cluster, &graph, opts, true);
        drop(graph);
        let mut all = diagnostics;
        all.append(&mut out.diagnostics);
        out.diagnostics = all;
        // The tiered layout is not indexed: no copy of the result for it.
        self.index = match cluster.cluster_policies.is_empty() {
            true => Index::build(cluster, out.clone(), recorded, opts),
            false => None,
        };
        (Output::Full(out), Path::Full(reason))
    }

    /// The ruleset of the last compile, when it is indexed (the edits of
    /// the next incremental compile apply to it).
    pub fn current(&self) -> Option<&Ruleset> {
        self.index.as_ref().map(|ix| &ix.compiled.ruleset)
    }
}

/// A policy of a namespace, as far as isolation goes.
#[derive(Debug)]
struct Isolator {
    id: Arc<ObjectRef>,
    selector: Selector,
    ingress: bool,
    egress: bool,
    audit: bool,
}

/// A group chain's key: direction, isolating policies (sorted), audit group.
/// The policies are shared with [`Isolator::id`]: a pod's keys are built
/// for every changed pod, and a namespace may have hundreds of policies
/// selecting every pod (copying their names was a third of a partial
/// compile on the realistic cluster).
type GroupKey = (Direction, Vec<Arc<ObjectRef>>, bool);

/// Which pods a named-port set holds.
#[derive(Debug)]
enum Scope {
    /// Enforced pods.
    Local,
    /// Every pod.
    All,
    /// The pods of a peer selector (index into [`Index::matches`]).
    Pods(usize),
    /// Pods with an address in these ranges.
    Block(Vec<Range>),
    /// No pod (nodes, networks).
    Nothing,
}

#[derive(Debug)]
struct NamedSet {
    set: String,
    family: Family,
    scope: Scope,
}

/// The previous compile and what finds a pod's elements in it.
#[derive(Debug)]
struct Index {
    node: Option<String>,
    options: Options,
    /// The last result (its `drop_log` moved out to `drop_log`).
    compiled: Compiled,
    /// The drop-log index, shared with the results handed out: changed
    /// (copied first when a result still holds it) only when a group comes
    /// or goes, or a pod's address while some group logs.
    drop_log: Arc<crate::core::compile::droplog::Index>,
    /// The model's pods as compiled (shared with the model: a pod the model
    /// replaces stays here until the next compile).
    pods: BTreeMap<ObjectRef, Arc<Pod>>,
    /// Address → how many pods have it.
    owners: HashMap<IpAddr, u32>,
    /// Namespace → its policies that isolate in some direction, sorted.
    policies: HashMap<String, Vec<Isolator>>,
    /// Group chain key → (name, enforced pods in it).
    groups: HashMap<GroupKey, (String, usize)>,
    /// Distinct peer selectors with their `pods-…` sets per family.
    matches: Vec<(PodMatch, Vec<(Family, String)>)>,
    /// Namespace → selectors scoped to it by name.
    named_scope: HashMap<String, Vec<usize>>,
    /// Selectors scoped by a namespace selector.
    selector_scope: Vec<usize>,
    /// Namespace → the selectors that may match its pods (memo).
    candidates: HashMap<String, Vec<usize>>,
    /// (port name, protocol) → the sets of that named port.
    named_ports: HashMap<(String, Protocol), Vec<NamedSet>>,
    /// The drop-log index holds pod addresses.
    logs_any: bool,
    /// Peer selector → its index in `matches`.
    by_match: BTreeMap<PodMatch, usize>,
    /// Generated set name → its key (the compile's, for hash collisions).
    set_keys: BTreeMap<String, String>,
    /// (direction, policy) → how many group chains jump to its chain.
    policy_uses: HashMap<(Direction, ObjectRef), usize>,
    /// What the structural steps of the current update changed, by name.
    touched: Touched,
    /// Set or map name → how many times the ruleset's chains name it
    /// (a set whose count drops to 0 goes with the chains that named it).
    set_uses: HashMap<String, usize>,
}

/// What [`Index::update`] did.
enum Step {
    /// Only elements changed: these.
    Elements(Edits),
    /// Group chains (and maybe policy chains and sets) came, went or were
    /// rebuilt, or a policy moved pods between groups: [`Index::touched`]
    /// names what changed.
    Structural,
}

/// A pod's part of the ruleset.
#[derive(Debug)]
struct Contribution {
    id: ObjectRef,
    ips: Vec<IpAddr>,
    enforced: bool,
    sets: Vec<(String, Element)>,
    maps: Vec<(String, IpAddr, String)>,
}

impl Index {
    fn same_options(&self, o: &Options) -> bool {
        let mine = &self.options;
        mine.node == o.node
            && mine.drop_log == o.drop_log
            && mine.new_pods == o.new_pods
            && mine.revoke_established == o.revoke_established
    }

    fn enforced(&self, pod: &Pod) -> bool {
        pod.enforced_by(self.node.as_deref())
    }

    /// The group keys of a pod, per direction it is isolated in (as
    /// `dispatch` computes them: enforced policies first, else audited ones).
    fn group_keys(&self, pod: &Pod) -> Vec<GroupKey> {
        let mut out = Vec::new();
        if !self.enforced(pod) {
            return out;
        }
        let pols = self.policies.get(&pod.id.namespace);
        for dir in Direction::ALL {
            // Sized once: a namespace may have hundreds of policies that
            // select every pod (growing the vector was most of this).
            let all = pols.map_or(0, Vec::len);
            let (mut enforced, mut audited) = (Vec::with_capacity(all), Vec::new());
            for p in pols.into_iter().flatten() {
                let isolates = match dir {
                    Direction::Ingress => p.ingress,
                    Direction::Egress => p.egress,
                };
                if isolates && p.selector.matches(&pod.labels) {
                    match p.audit {
                        true => audited.push(p.id.clone()),
                        false => enforced.push(p.id.clone()),
                    }
                }
            }
            if !enforced.is_empty() {
                out.push((dir, enforced, false));
            } else if !audited.is_empty() {
                out.push((dir, audited, true));
            }
        }
        out
    }

    /// The peer selectors that may match pods of `ns` (by scope only).
    fn candidates(&mut self, cluster: &Cluster, ns: &str) -> Vec<usize> {
        if let Some(c) = self.candidates.get(ns) {
            return c.clone();
        }
        let labels = cluster.namespace_labels(ns);
        let mut c: Vec<usize> = self.named_scope.get(ns).cloned().unwrap_or_default();
        c.extend(self.selector_scope.iter().copied().filter(|i| {
            matches!(&self.matches[*i].0.namespaces, NamespaceScope::Selector(s) if s.matches(&labels))
        }));
        self.candidates.insert(ns.to_string(), c.clone());
        c
    }

    /// A pod's elements, given its group keys ([`Index::group_keys`]);
    /// `Err` when its group has no chain.
    fn contribution(
        &mut self,
        cluster: &Cluster,
        pod: &Pod,
        groups: &[GroupKey],
    ) -> Result<Contribution, &'static str> {
        let enforced = self.enforced(pod);
        let mut c = Contribution {
            id: pod.id.clone(),
            ips: pod.ips.clone(),
            enforced,
            sets: Vec::new(),
            maps: Vec::new(),
        };
        for key in groups {
            let Some((chain, _)) = self.groups.get(key) else {
                return Err("a pod's isolating policies form a new group");
            };
            for ip in &pod.ips {
                let map = names::dispatch_map(key.0, Family::of(ip));
                c.maps.push((map, *ip, chain.clone()));
            }
        }
        let rs = &self.compiled.ruleset;
        for ip in &pod.ips {
            let f = Family::of(ip);
            if enforced {
                c.sets
                    .push((names::self_set(f), Element::AddrPair(*ip, *ip)));
                let local = names::local_pods_set(f);
                if rs.sets.contains_key(&local) {
                    c.sets.push((local, Element::Addr(*ip)));
                }
            }
        }
        let members: BTreeSet<usize> = self
            .candidates(cluster, &pod.id.namespace)
            .into_iter()
            .filter(|i| self.matches[*i].0.pods.matches(&pod.labels))
            .collect();
        for i in &members {
            for (f, set) in &self.matches[*i].1 {
                for ip in pod.ips.iter().filter(|ip| Family::of(ip) == *f) {
                    c.sets.push((set.clone(), Element::Addr(*ip)));
                }
            }
        }
        for (name, (proto, num)) in &pod.named_ports {
            let Some(sets) = self.named_ports.get(&(name.clone(), *proto)) else {
                continue;
            };
            for s in sets {
                for ip in pod.ips.iter().filter(|ip| Family::of(ip) == s.family) {
                    let holds = match &s.scope {
                        Scope::Local => enforced,
                        Scope::All => true,
                        Scope::Pods(i) => members.contains(i),
                        Scope::Block(ranges) => ranges.iter().any(|r| r.contains(ip)),
                        Scope::Nothing => false,
                    };
                    if holds {
                        c.sets
                            .push((s.set.clone(), Element::AddrProtoPort(*ip, *proto, *num)));
                    }
                }
            }
        }
        Ok(c)
    }

    /// Applies the changed policies, then the changed pods, to the previous
    /// ruleset, or says why it cannot (the index is then of no use).
    fn update_all(&mut self, cluster: &Cluster, changes: &Changes) -> Result<Step, &'static str> {
        self.touched = Touched::default();
        let policies = match changes.policies.is_empty() {
            true => false,
            false => self.update_policies(cluster, &changes.policies)?,
        };
        match self.update(cluster, &changes.pods)? {
            Step::Elements(edits) if policies => {
                self.touch_edits(&edits);
                Ok(Step::Structural)
            }
            step => Ok(step),
        }
    }
}

mod build;
mod output;
mod partial;
mod pods;
mod policies;

pub use output::{Edited, Output, Reshaped};

#[cfg(test)]
mod tests;
