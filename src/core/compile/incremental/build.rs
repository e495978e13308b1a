//! Building the index from a full compile, and keeping its record of the
//! pod-dependent sets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Index, Isolator, NamedSet, Scope, SetSource};
use crate::core::compile::{Compiled, Options};
use crate::core::model::{Cluster, NamespaceScope, Peer, Pod, PodMatch};

impl Isolator {
    /// `p` as an isolator; `None` when it isolates in no direction.
    pub(super) fn of(p: &crate::core::model::Policy) -> Option<Isolator> {
        (p.ingress.is_some() || p.egress.is_some()).then(|| Isolator {
            id: Arc::new(p.id.clone()),
            selector: p.pod_selector.clone(),
            ingress: p.ingress.is_some(),
            egress: p.egress.is_some(),
            audit: p.audit,
        })
    }
}

impl Index {
    /// The index of a full compile; `None` for the tiered layout (with
    /// ClusterNetworkPolicies) or when the compile and the model disagree.
    pub(super) fn build(
        cluster: &Cluster,
        compiled: Compiled,
        recorded: crate::core::compile::Recorded,
        opts: &Options,
    ) -> Option<Index> {
        if !cluster.cluster_policies.is_empty() || !compiled.drop_log.cluster_rules.is_empty() {
            return None;
        }
        let mut policies: HashMap<String, Vec<Isolator>> = HashMap::new();
        for i in cluster.policies.values().filter_map(Isolator::of) {
            policies.entry(i.id.namespace.clone()).or_default().push(i);
        }
        let groups = compiled
            .drop_log
            .groups
            .iter()
            .map(|(name, g)| {
                (
                    (
                        g.direction,
                        g.policies.iter().cloned().map(Arc::new).collect(),
                        g.audit,
                    ),
                    (name.clone(), 0),
                )
            })
            .collect();
        let mut compiled = compiled;
        let drop_log = Arc::new(std::mem::take(&mut compiled.drop_log));
        let mut ix = Index {
            node: opts.node.clone(),
            options: opts.clone(),
            logs_any: drop_log.logs_any(),
            compiled,
            drop_log,
            pods: cluster.pods.clone(),
            owners: HashMap::new(),
            policies,
            groups,
            matches: Vec::new(),
            named_scope: HashMap::new(),
            selector_scope: Vec::new(),
            candidates: HashMap::new(),
            named_ports: HashMap::new(),
            by_match: BTreeMap::new(),
            set_keys: recorded.set_keys,
            policy_uses: HashMap::new(),
            touched: Default::default(),
            set_uses: HashMap::new(),
        };
        for (_, chain) in &ix.compiled.ruleset.chains {
            super::partial::chain_sets(chain, |s| {
                *ix.set_uses.entry(s.to_string()).or_default() += 1;
            });
        }
        for (dir, pols, _) in ix.groups.keys() {
            for p in pols {
                *ix.policy_uses.entry((*dir, (**p).clone())).or_default() += 1;
            }
        }
        for (set, source) in recorded.sources {
            ix.add_source(set, source);
        }
        let pods: Vec<Arc<Pod>> = ix.pods.values().cloned().collect();
        for pod in &pods {
            for ip in &pod.ips {
                *ix.owners.entry(*ip).or_default() += 1;
            }
            for key in ix.group_keys(pod) {
                ix.groups.get_mut(&key)?.1 += 1;
            }
        }
        if ix.compiled.enforced_pods != pods.iter().filter(|p| ix.enforced(p)).count() {
            return None;
        }
        Some(ix)
    }

    /// The index of selector `m` in `matches` (added if new).
    pub(super) fn match_index(&mut self, m: &PodMatch) -> usize {
        if let Some(i) = self.by_match.get(m) {
            return *i;
        }
        self.matches.push((m.clone(), Vec::new()));
        let i = self.matches.len() - 1;
        match &m.namespaces {
            NamespaceScope::Named(n) => self.named_scope.entry(n.clone()).or_default().push(i),
            NamespaceScope::Selector(_) => self.selector_scope.push(i),
        }
        self.by_match.insert(m.clone(), i);
        // A new selector may match pods of namespaces already memoised.
        self.candidates.clear();
        i
    }

    /// Indexes a pod-dependent set.
    pub(super) fn add_source(&mut self, set: String, source: SetSource) {
        match source {
            SetSource::Pods(m, f) => {
                let i = self.match_index(&m);
                self.matches[i].1.push((f, set));
            }
            SetSource::LocalNamedPort(name, proto, family) => {
                self.named_ports
                    .entry((name, proto))
                    .or_default()
                    .push(NamedSet {
                        set,
                        family,
                        scope: Scope::Local,
                    });
            }
            SetSource::PeerNamedPort(peer, name, proto, family) => {
                let scope = match &peer {
                    None => Scope::All,
                    Some(Peer::Pods(m)) => Scope::Pods(self.match_index(m)),
                    Some(Peer::IpBlock(b)) => Scope::Block(b.ranges()),
                    Some(Peer::Nodes(_)) | Some(Peer::Networks(_)) => Scope::Nothing,
                };
                self.named_ports
                    .entry((name, proto))
                    .or_default()
                    .push(NamedSet { set, family, scope });
            }
        }
    }
}
