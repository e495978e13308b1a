use super::*;
use crate::core::k8s::{Objects, to_cluster};
use serde_json::json;

fn pod(name: &str, rv: &str, app: &str, ip: &str) -> SlimPod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "a", "resourceVersion": rv,
                     "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c",
            "ports": [{"name": "http", "containerPort": 80}]}]},
        "status": {"podIP": ip}
    }))
    .unwrap()
}

fn ns(name: &str, rv: &str, team: &str) -> core::Namespace {
    serde_json::from_value(json!({
        "metadata": {"name": name, "resourceVersion": rv, "labels": {"team": team}}
    }))
    .unwrap()
}

fn pol(name: &str, rv: &str, from_app: &str) -> net::NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "a", "resourceVersion": rv},
        "spec": {"podSelector": {}, "ingress": [{"from": [
            {"podSelector": {"matchLabels": {"app": from_app}}}]}]}
    }))
    .unwrap()
}

/// A store's state: each object in an `Arc` (new ones: every object is
/// read again, as after a relist).
fn arcs<K: Clone>(objs: &[K]) -> Vec<Arc<K>> {
    objs.iter().cloned().map(Arc::new).collect()
}

fn objects(n: &[core::Namespace], p: &[SlimPod], q: &[net::NetworkPolicy]) -> Objects {
    let src = api_source;
    Objects {
        namespaces: n.iter().map(|o| (src(), o.clone())).collect(),
        pods: p.iter().map(|o| (src(), o.to_pod())).collect(),
        policies: q.iter().map(|o| (src(), o.clone())).collect(),
        ..Objects::default()
    }
}

/// After every step the cached model equals a fresh conversion of the
/// same objects, and only changed objects were converted.
#[test]
fn cached_model_equals_fresh_conversion() {
    let mut cache = ClusterCache::new();
    let mut namespaces = vec![ns("a", "1", "x"), ns("b", "2", "y")];
    let mut pods = vec![
        pod("p1", "3", "web", "10.0.0.1"),
        pod("p2", "4", "db", "10.0.0.2"),
        pod("bad", "5", "web", "not-an-ip"),
    ];
    let mut policies = vec![pol("allow", "6", "web")];
    let mut check = |n: &[core::Namespace],
                     p: &[SlimPod],
                     q: &[net::NetworkPolicy],
                     expect_converted: usize,
                     expect_removed: usize| {
        let stats = cache.update(&arcs(n), &arcs(p), &arcs(q));
        let (fresh, fresh_diags) = to_cluster(&objects(n, p, q));
        assert_eq!(
            cache.cluster(),
            &fresh,
            "model differs from a fresh conversion"
        );
        let mut a: Vec<String> = cache.diagnostics().iter().map(|d| d.to_string()).collect();
        let mut b: Vec<String> = fresh_diags.iter().map(|d| d.to_string()).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "diagnostics differ");
        assert_eq!(stats.converted, expect_converted, "{stats:?}");
        assert_eq!(stats.removed, expect_removed, "{stats:?}");
    };
    check(&namespaces, &pods, &policies, 6, 0);
    // Nothing changed: nothing converted.
    check(&namespaces, &pods, &policies, 0, 0);
    // A relabel (new resourceVersion) converts one pod.
    pods[1] = pod("p2", "7", "web", "10.0.0.2");
    check(&namespaces, &pods, &policies, 1, 0);
    // A namespace relabel and a policy change.
    namespaces[1] = ns("b", "8", "z");
    policies[0] = pol("allow", "9", "db");
    check(&namespaces, &pods, &policies, 2, 0);
    // The bad pod gets a valid IP: its diagnostic goes away.
    pods[2] = pod("bad", "10", "web", "10.0.0.3");
    check(&namespaces, &pods, &policies, 1, 0);
    // Deletions of each kind.
    pods.remove(0);
    namespaces.remove(1);
    policies.clear();
    check(&namespaces, &pods, &policies, 0, 3);
    // One pod goes and another comes in the same update.
    pods[0] = pod("p9", "11", "db", "10.0.0.9");
    check(&namespaces, &pods, &policies, 1, 1);
    // Back to nothing, then the same objects again.
    check(&[], &[], &[], 0, 3);
    check(&namespaces, &pods, &policies, 3, 0);
}

/// A store hands unchanged objects over as the same `Arc`s: those are
/// not read; a replaced `Arc` is (converted only if its version is new);
/// an `Arc` no longer handed over is gone unless its key came again.
#[test]
fn objects_are_recognised_by_address() {
    let mut cache = ClusterCache::new();
    let namespaces = arcs(&[ns("a", "1", "x")]);
    let mut pods = arcs(&[
        pod("p1", "2", "web", "10.0.0.1"),
        pod("p2", "3", "db", "10.0.0.2"),
    ]);
    let policies = arcs(&[pol("allow", "4", "web")]);
    let check = |cache: &mut ClusterCache, pods: &[Arc<SlimPod>], conv, rem| {
        let stats = cache.update(&namespaces, pods, &policies);
        assert_eq!((stats.converted, stats.removed), (conv, rem), "{stats:?}");
        assert_eq!(
            stats.converted + stats.reused,
            1 + pods.len() + 1,
            "{stats:?}"
        );
        let plain = |v: &[Arc<SlimPod>]| v.iter().map(|o| (**o).clone()).collect::<Vec<_>>();
        let nss: Vec<_> = namespaces.iter().map(|o| (**o).clone()).collect();
        let pols: Vec<_> = policies.iter().map(|o| (**o).clone()).collect();
        let (fresh, _) = to_cluster(&objects(&nss, &plain(pods), &pols));
        assert_eq!(cache.cluster(), &fresh);
    };
    check(&mut cache, &pods, 4, 0);
    let v = cache.policy_versions();
    check(&mut cache, &pods, 0, 0);
    // The same objects in new `Arc`s (a relist): read, not converted.
    let relisted = arcs(&pods.iter().map(|o| (**o).clone()).collect::<Vec<_>>());
    check(&mut cache, &relisted, 0, 0);
    check(&mut cache, &pods, 0, 0);
    // One pod replaced, one added, in the same update.
    pods[0] = Arc::new(pod("p1", "5", "db", "10.0.0.1"));
    pods.push(Arc::new(pod("p3", "6", "web", "10.0.0.3")));
    check(&mut cache, &pods, 2, 0);
    assert_eq!(
        cache.take_changes().pods.len(),
        3,
        "p1, p2, p3 (p2 from the start)"
    );
    // One gone, and another replaced by an object of the same version.
    pods.remove(1);
    pods[0] = Arc::new((*pods[0]).clone());
    check(&mut cache, &pods, 0, 1);
    let gone = cache.take_changes();
    assert_eq!(gone.pods, BTreeSet::from([ObjectRef::new("a", "p2")]));
    assert_eq!(cache.policy_versions(), v, "no policy changed");
}

/// `take_changes` names the pods whose model changed (by value: a new
/// resourceVersion alone is no change) and flags every other kind.
#[test]
fn changes_name_the_pods_and_flag_the_rest() {
    let mut cache = ClusterCache::new();
    let namespaces = vec![ns("a", "1", "x")];
    let mut pods = vec![
        pod("p1", "2", "web", "10.0.0.1"),
        pod("p2", "3", "db", "10.0.0.2"),
    ];
    let mut policies = vec![pol("allow", "4", "web")];
    let id = |n: &str| ObjectRef::new("a", n);
    cache.update(&arcs(&namespaces), &arcs(&pods), &arcs(&policies));
    let first = cache.take_changes();
    assert!(first.other);
    assert_eq!(first.pods, BTreeSet::from([id("p1"), id("p2")]));
    cache.update(&arcs(&namespaces), &arcs(&pods), &arcs(&policies));
    assert_eq!(cache.take_changes(), Changes::default(), "nothing changed");
    pods[0] = pod("p1", "5", "web", "10.0.0.1");
    cache.update(&arcs(&namespaces), &arcs(&pods), &arcs(&policies));
    assert_eq!(cache.take_changes(), Changes::default(), "same content");
    pods[1] = pod("p2", "6", "web", "10.0.0.2");
    cache.update(&arcs(&namespaces), &arcs(&pods), &arcs(&policies));
    let relabel = Changes {
        pods: BTreeSet::from([id("p2")]),
        ..Changes::default()
    };
    assert_eq!(cache.take_changes(), relabel);
    pods.remove(0);
    policies[0] = pol("allow", "7", "db");
    cache.update(&arcs(&namespaces), &arcs(&pods), &arcs(&policies));
    // Changes accumulate until taken.
    pods[0] = pod("p2", "8", "db", "10.0.0.2");
    cache.update(&arcs(&namespaces), &arcs(&pods), &arcs(&policies));
    let both = Changes {
        pods: BTreeSet::from([id("p1"), id("p2")]),
        policies: BTreeSet::from([id("allow")]),
        other: false,
    };
    assert_eq!(cache.take_changes(), both);
}

fn cnp(name: &str, rv: &str, priority: i64) -> ClusterNetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name, "resourceVersion": rv},
        "spec": {"tier": "Admin", "priority": priority, "subject": {"namespaces": {}},
                 "egress": [{"action": "Deny", "to": [{"nodes": {}}]}]}
    }))
    .unwrap()
}

fn node(name: &str, rv: &str, ip: &str) -> core::Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "resourceVersion": rv},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
    }))
    .unwrap()
}

/// ClusterNetworkPolicies and Nodes: the same guarantee as above.
#[test]
fn cluster_scoped_objects_are_cached_too() {
    let mut cache = ClusterCache::new();
    let mut check = |c: &[ClusterNetworkPolicy], n: &[core::Node], converted, removed| {
        let stats = cache.update_cluster_scoped(&arcs(c), &arcs(n));
        let objs = Objects {
            cluster_policies: c.iter().map(|o| (api_source(), o.clone())).collect(),
            nodes: n.iter().map(|o| (api_source(), o.clone())).collect(),
            ..Objects::default()
        };
        let (fresh, fresh_diags) = to_cluster(&objs);
        assert_eq!(cache.cluster(), &fresh);
        let a: Vec<String> = cache.diagnostics().iter().map(|d| d.to_string()).collect();
        let mut b: Vec<String> = fresh_diags.iter().map(|d| d.to_string()).collect();
        b.sort();
        let mut a = a;
        a.sort();
        assert_eq!(a, b);
        assert_eq!(
            (stats.converted, stats.removed),
            (converted, removed),
            "{stats:?}"
        );
    };
    let mut c = vec![cnp("a", "1", 10), cnp("bad", "2", 5000)];
    let mut n = vec![node("n1", "3", "10.0.0.1"), node("n2", "4", "10.0.0.2")];
    check(&c, &n, 4, 0);
    check(&c, &n, 0, 0);
    c[0] = cnp("a", "5", 20);
    n[1] = node("n2", "6", "10.0.0.3");
    check(&c, &n, 2, 0);
    c.remove(1);
    n.remove(0);
    check(&c, &n, 0, 2);
}

/// One kind's store in [`per_key_updates_equal_whole_set_updates`]: the
/// current objects by key, and the keys changed since the last take.
struct FakeStore<K> {
    objs: BTreeMap<ObjectRef, Arc<K>>,
    changed: BTreeSet<ObjectRef>,
}

impl<K> FakeStore<K> {
    fn new() -> Self {
        FakeStore {
            objs: BTreeMap::new(),
            changed: BTreeSet::new(),
        }
    }
    fn put(&mut self, k: ObjectRef, o: K) {
        self.objs.insert(k.clone(), Arc::new(o));
        self.changed.insert(k);
    }
    fn delete(&mut self, k: &ObjectRef) {
        self.objs.remove(k);
        self.changed.insert(k.clone());
    }
    fn all(&self) -> Vec<Arc<K>> {
        self.objs.values().cloned().collect()
    }
    /// The changed keys with their objects; every object after a relist.
    fn take(&mut self, relist: bool) -> Delta<K> {
        let changed = std::mem::take(&mut self.changed);
        match relist {
            true => Delta::All(self.all()),
            false => Delta::Keys(
                changed
                    .into_iter()
                    .map(|k| {
                        let o = self.objs.get(&k).cloned();
                        (k, o)
                    })
                    .collect(),
            ),
        }
    }
}

/// `o` without a resourceVersion when `rv` is empty (as built, else).
fn as_versioned<K: serde::Serialize + serde::de::DeserializeOwned>(o: K, rv: &str) -> K {
    if !rv.is_empty() {
        return o;
    }
    let mut m = serde_json::to_value(o).unwrap();
    m["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    serde_json::from_value(m).unwrap()
}

/// The agent's path (only the keys the watch reported, a whole store after
/// a relist) builds the same model, diagnostics and changes as handing
/// every object over each time, through a long pseudo-random sequence of
/// creates, new versions, deletes, re-creates, objects re-listed at a new
/// address with the same resourceVersion, and objects without one.
#[test]
fn per_key_updates_equal_whole_set_updates() {
    let (mut whole, mut keyed) = (ClusterCache::new(), ClusterCache::new());
    let mut n = FakeStore::new();
    let mut p = FakeStore::new();
    let mut q = FakeStore::new();
    let mut c = FakeStore::new();
    let mut d = FakeStore::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |m: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % m
    };
    let mut rv = 100;
    for step in 0..600 {
        for _ in 0..1 + next(4) {
            rv += 1;
            // Roughly: 1 in 8 changes has no resourceVersion, 1 in 8 keeps
            // the previous one (a relist's new copy of the same version).
            let v = match next(8) {
                0 => String::new(),
                1 => (rv - 1).to_string(),
                _ => rv.to_string(),
            };
            let del = next(5) == 0;
            let i = next(6);
            match next(5) {
                0 => {
                    let k = ObjectRef::new("", format!("ns{}", i % 3));
                    if del {
                        n.delete(&k);
                    } else {
                        let o = ns(&k.name, &v, &format!("t{}", next(3)));
                        n.put(k, as_versioned(o, &v));
                    }
                }
                1 | 2 => {
                    let k = ObjectRef::new("a", format!("p{i}"));
                    if del {
                        p.delete(&k);
                    } else {
                        let ip = match next(6) {
                            0 => "bad".to_string(),
                            j => format!("10.0.0.{j}"),
                        };
                        let o = pod(&k.name, &v, &format!("app{}", next(3)), &ip);
                        p.put(k, as_versioned(o, &v));
                    }
                }
                3 => {
                    let k = ObjectRef::new("a", format!("q{}", i % 4));
                    if del {
                        q.delete(&k);
                    } else {
                        let o = pol(&k.name, &v, &format!("app{}", next(3)));
                        q.put(k, as_versioned(o, &v));
                    }
                }
                _ => match next(2) {
                    0 => {
                        let k = ObjectRef::new("", format!("c{}", i % 2));
                        if del {
                            c.delete(&k);
                        } else {
                            let prio = [10, 20, 5000][next(3) as usize];
                            c.put(k.clone(), as_versioned(cnp(&k.name, &v, prio), &v));
                        }
                    }
                    _ => {
                        let k = ObjectRef::new("", format!("n{}", i % 3));
                        if del {
                            d.delete(&k);
                        } else {
                            let ip = format!("10.1.0.{}", next(4));
                            d.put(k.clone(), as_versioned(node(&k.name, &v, &ip), &v));
                        }
                    }
                },
            }
        }
        let a = whole.update(&n.all(), &p.all(), &q.all());
        let a2 = whole.update_cluster_scoped(&c.all(), &d.all());
        let relist = step % 37 == 0;
        let b = keyed.update_delta(&n.take(relist), &p.take(relist), &q.take(relist));
        let b2 = keyed.update_cluster_scoped_delta(&c.take(relist), &d.take(relist));
        assert_eq!(
            keyed.cluster(),
            whole.cluster(),
            "step {step}: models differ"
        );
        let text = |c: &ClusterCache| -> Vec<String> {
            c.diagnostics().iter().map(|d| d.to_string()).collect()
        };
        assert_eq!(
            text(&keyed),
            text(&whole),
            "step {step}: diagnostics differ"
        );
        assert_eq!(
            keyed.take_changes(),
            whole.take_changes(),
            "step {step}: changes differ"
        );
        assert_eq!(
            keyed.policy_versions(),
            whole.policy_versions(),
            "step {step}"
        );
        assert_eq!(
            (b.converted + b2.converted, b.removed + b2.removed),
            (a.converted + a2.converted, a.removed + a2.removed),
            "step {step}: {a:?} {a2:?} / {b:?} {b2:?}"
        );
        let held = |c: &ClusterCache| {
            let (p, cp) = c.policy_objects();
            crate::core::k8s::node_status::Held::of(p, cp)
        };
        assert_eq!(held(&keyed), held(&whole), "step {step}");
    }
    // The sequence reached every kind of change.
    assert!(!whole.cluster().pods.is_empty() && !whole.cluster().policies.is_empty());
}
