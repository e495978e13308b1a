//! The incremental compile (`core::compile::incremental`) equals the full
//! compile: over random small clusters and random event sequences (pods
//! added, deleted, relabelled, readdressed, given other named ports or moved
//! to another node; NetworkPolicies added, removed, rewritten or given
//! another pod selector, alone or with a pod in one batch; and structural
//! events: a namespace relabelled, a shared address), after EVERY event the
//! incremental result renders byte for byte like a fresh full compile of the
//! same model, and carries the same drop-log index and enforced-pod count,
//! in three option sets (node view with revocation, drop logging of every
//! namespace and the new-pod guard; node view with all of them off; the
//! all-pods view with defaults). A namespace change must take the full
//! path; most policy events must not.
//!
//! `NFTPOL_INCR_CASES` sets the number of sequences (default 1,000, each run with
//! the three option sets).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use nftpol::core::compile::incremental::{Changes, Output, Path, State};
use nftpol::core::compile::{Compiled, DropLog, NewPods, Options, compile_cluster};
use nftpol::core::model::{
    Cidr, Cluster, IpBlock, NAMESPACE_NAME_LABEL, Namespace, NamespaceScope, Node, ObjectRef, Peer,
    Pod, PodMatch, Policy, Port, PortMatch, Protocol, Requirement, Rule, Selector,
};
use nftpol::core::nft::delta::{diff, staged, staged_touched};
use nftpol::core::nft::render::script;
use nftpol::core::nft::ruleset::Ruleset;
use nftpol_testkit::synth::Rng;
use proptest::prelude::*;

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const APPS: [&str; 3] = ["a", "b", "c"];
const TIERS: [&str; 2] = ["web", "db"];
const NODES: [&str; 2] = ["n1", "n2"];

fn pick<'a>(r: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs[r.below(xs.len())]
}

fn set(vs: &[&str]) -> BTreeSet<String> {
    vs.iter().map(|s| s.to_string()).collect()
}

fn selector(r: &mut Rng) -> Selector {
    match r.below(6) {
        0 => Selector::everything(),
        1 => Selector::new(vec![Requirement::In("app".into(), set(&[pick(r, &APPS)]))]),
        2 => Selector::new(vec![Requirement::NotIn("tier".into(), set(&["db"]))]),
        3 => Selector::new(vec![Requirement::Exists("tier".into())]),
        4 => Selector::new(vec![Requirement::DoesNotExist("app".into())]),
        _ => Selector::new(vec![
            Requirement::In("app".into(), set(&[pick(r, &APPS), pick(r, &APPS)])),
            Requirement::In("tier".into(), set(&[pick(r, &TIERS)])),
        ]),
    }
}

fn peer(r: &mut Rng, ns: &str) -> Peer {
    match r.below(5) {
        0 | 1 => Peer::Pods(PodMatch {
            namespaces: NamespaceScope::Named(ns.to_string()),
            pods: selector(r),
        }),
        2 => Peer::Pods(PodMatch {
            namespaces: NamespaceScope::Selector(match r.below(2) {
                0 => Selector::everything(),
                _ => Selector::new(vec![Requirement::In("team".into(), set(&["red"]))]),
            }),
            pods: selector(r),
        }),
        3 => Peer::IpBlock(IpBlock {
            cidr: Cidr::parse("10.244.0.0/16").unwrap(),
            except: vec![Cidr::parse("10.244.2.0/24").unwrap()],
        }),
        _ => Peer::IpBlock(IpBlock {
            cidr: Cidr::parse("fd00:10:244::/56").unwrap(),
            except: vec![],
        }),
    }
}

fn ports(r: &mut Rng) -> Option<Vec<Port>> {
    let one = |r: &mut Rng| match r.below(4) {
        0 => Port {
            protocol: Protocol::Tcp,
            port: PortMatch::Range(80, 80 + r.below(2) as u16 * 10),
        },
        1 => Port {
            protocol: Protocol::Tcp,
            port: PortMatch::Named("http".into()),
        },
        2 => Port {
            protocol: Protocol::Udp,
            port: PortMatch::Named("dns".into()),
        },
        _ => Port {
            protocol: Protocol::Udp,
            port: PortMatch::All,
        },
    };
    match r.below(3) {
        0 => None,
        _ => Some((0..1 + r.below(2)).map(|_| one(r)).collect()),
    }
}

fn rules(r: &mut Rng, ns: &str) -> Vec<Rule> {
    (0..r.below(3))
        .map(|_| Rule {
            peers: match r.below(4) {
                0 => None,
                _ => Some((0..1 + r.below(2)).map(|_| peer(r, ns)).collect()),
            },
            ports: ports(r),
        })
        .collect()
}

fn policy(r: &mut Rng, name: &str) -> Policy {
    let ns = pick(r, &NAMESPACES);
    policy_in(r, ns, name)
}

fn policy_in(r: &mut Rng, ns: &str, name: &str) -> Policy {
    let (ingress, egress) = match r.below(3) {
        0 => (Some(rules(r, ns)), None),
        1 => (None, Some(rules(r, ns))),
        _ => (Some(rules(r, ns)), Some(rules(r, ns))),
    };
    let valid = r.below(10) != 0;
    Policy {
        id: ObjectRef::new(ns, name),
        pod_selector: selector(r),
        ingress: if valid { ingress } else { Some(vec![]) },
        egress,
        valid,
        audit: valid && r.below(6) == 0,
    }
}

/// An address from a small pool (so that two pods sometimes share one).
fn ip(r: &mut Rng, v6: bool) -> IpAddr {
    let node = 1 + r.below(3);
    let host = 2 + r.below(12);
    match v6 {
        false => format!("10.244.{node}.{host}").parse().unwrap(),
        true => format!("fd00:10:244:{node}::{host:x}").parse().unwrap(),
    }
}

fn pod_ips(r: &mut Rng) -> Vec<IpAddr> {
    let mut ips = match r.below(4) {
        0 => vec![ip(r, false)],
        1 => vec![ip(r, true)],
        _ => vec![ip(r, false), ip(r, true)],
    };
    ips.sort();
    ips
}

fn labels(r: &mut Rng) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    if r.below(5) != 0 {
        l.insert("app".to_string(), pick(r, &APPS).to_string());
    }
    if r.below(3) != 0 {
        l.insert("tier".to_string(), pick(r, &TIERS).to_string());
    }
    l
}

fn named_ports(r: &mut Rng) -> BTreeMap<String, (Protocol, u16)> {
    let mut p = BTreeMap::new();
    if r.below(3) != 0 {
        let num = [80, 8080][r.below(2)];
        p.insert("http".to_string(), (Protocol::Tcp, num));
    }
    if r.below(3) == 0 {
        let proto = [Protocol::Udp, Protocol::Tcp][r.below(2)];
        p.insert("dns".to_string(), (proto, 53));
    }
    p
}

fn pod(r: &mut Rng, i: usize) -> Pod {
    let ns = pick(r, &NAMESPACES);
    Pod {
        id: ObjectRef::new(ns, format!("p{i}")),
        labels: labels(r),
        node: Some(pick(r, &NODES).to_string()),
        ips: pod_ips(r),
        named_ports: named_ports(r),
    }
}

fn namespace(r: &mut Rng, name: &str) -> Namespace {
    let mut labels = BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), name.to_string())]);
    if r.below(2) == 0 {
        labels.insert("team".into(), "red".into());
    }
    Namespace {
        name: name.to_string(),
        labels,
        log_drops: [None, Some(true), Some(false)][r.below(3)],
    }
}

fn cluster(r: &mut Rng) -> Cluster {
    let mut c = Cluster::default();
    // Namespace "z" has no object: its pods still count.
    for ns in &NAMESPACES[..2] {
        c.namespaces.insert(ns.to_string(), namespace(r, ns));
    }
    for (i, n) in NODES.iter().enumerate() {
        c.nodes.insert(
            n.to_string(),
            Node {
                name: n.to_string(),
                labels: Default::default(),
                addresses: vec![],
                pod_cidrs: vec![
                    Cidr::parse(&format!("10.244.{}.0/24", i + 1)).unwrap(),
                    Cidr::parse(&format!("fd00:10:244:{}::/64", i + 1)).unwrap(),
                ],
            },
        );
    }
    for i in 0..r.below(10) + 2 {
        let p = pod(r, i);
        c.pods.insert(p.id.clone(), p.into());
    }
    for i in 0..r.below(6) + 1 {
        let p = policy(r, &format!("pol{i}"));
        c.policies.insert(p.id.clone(), p);
    }
    c
}

/// What an event changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Pods only (or nothing).
    Pods,
    /// NetworkPolicies (maybe pods too): the policy step, not a full compile.
    Policies,
    /// A namespace: must take the full path.
    Other,
}

/// Replaces an existing policy by another version (same name): a new
/// random one, or the same with another pod selector.
fn change_policy(r: &mut Rng, c: &mut Cluster, ch: &mut Changes) {
    let ids: Vec<ObjectRef> = c.policies.keys().cloned().collect();
    let Some(id) = ids.get(r.below(ids.len().max(1))).cloned() else {
        return;
    };
    let new = match r.below(2) {
        0 => policy_in(r, &id.namespace, &id.name),
        _ => Policy {
            pod_selector: selector(r),
            ..c.policies[&id].clone()
        },
    };
    c.policies.insert(id.clone(), new);
    ch.policies.insert(id);
}

/// Applies one event; returns what changed, and what kind of change it was.
fn event(r: &mut Rng, c: &mut Cluster, next: &mut usize) -> (Changes, Kind) {
    let mut ch = Changes::default();
    let ids: Vec<ObjectRef> = c.pods.keys().cloned().collect();
    let some = |r: &mut Rng| ids.get(r.below(ids.len().max(1))).cloned();
    let kind = r.below(24);
    match kind {
        0..=2 => {
            *next += 1;
            let p = pod(r, 100 + *next);
            ch.pods.insert(p.id.clone());
            c.pods.insert(p.id.clone(), p.into());
        }
        3..=4 => {
            if let Some(id) = some(r) {
                c.pods.remove(&id);
                ch.pods.insert(id);
            }
        }
        5..=9 => {
            if let Some(id) = some(r) {
                std::sync::Arc::make_mut(c.pods.get_mut(&id).unwrap()).labels = labels(r);
                ch.pods.insert(id);
            }
        }
        10..=12 => {
            if let Some(id) = some(r) {
                std::sync::Arc::make_mut(c.pods.get_mut(&id).unwrap()).ips = pod_ips(r);
                ch.pods.insert(id);
            }
        }
        13 => {
            if let Some(id) = some(r) {
                std::sync::Arc::make_mut(c.pods.get_mut(&id).unwrap()).named_ports = named_ports(r);
                ch.pods.insert(id);
            }
        }
        14 => {
            if let Some(id) = some(r) {
                std::sync::Arc::make_mut(c.pods.get_mut(&id).unwrap()).node =
                    Some(pick(r, &NODES).to_string());
                ch.pods.insert(id);
            }
        }
        15 => {
            // Several pods at once (a batch the worker coalesced).
            for _ in 0..2 {
                if let Some(id) = some(r) {
                    let p = std::sync::Arc::make_mut(c.pods.get_mut(&id).unwrap());
                    p.labels = labels(r);
                    p.ips = pod_ips(r);
                    ch.pods.insert(id);
                }
            }
        }
        16 | 17 => {
            *next += 1;
            let p = policy(r, &format!("new{}", *next));
            ch.policies.insert(p.id.clone());
            c.policies.insert(p.id.clone(), p);
        }
        18 => {
            let ids: Vec<ObjectRef> = c.policies.keys().cloned().collect();
            if let Some(id) = ids.get(r.below(ids.len().max(1))) {
                c.policies.remove(id);
                ch.policies.insert(id.clone());
            }
        }
        19 | 20 => change_policy(r, c, &mut ch),
        21 => {
            // A policy and a pod in one batch.
            change_policy(r, c, &mut ch);
            if let Some(id) = some(r) {
                std::sync::Arc::make_mut(c.pods.get_mut(&id).unwrap()).labels = labels(r);
                ch.pods.insert(id);
            }
        }
        22 => {
            let ns = pick(r, &NAMESPACES[..2]);
            c.namespaces.insert(ns.to_string(), namespace(r, ns));
            ch.other = true;
        }
        _ => {
            // Nothing changed.
        }
    }
    let kind = match (ch.other, ch.policies.is_empty()) {
        (true, _) => Kind::Other,
        (false, false) => Kind::Policies,
        (false, true) => Kind::Pods,
    };
    (ch, kind)
}

fn option_sets() -> Vec<(&'static str, Options)> {
    vec![
        (
            "node n1, revocation, drop logging, new-pod guard",
            Options {
                node: Some("n1".into()),
                drop_log: DropLog {
                    all_namespaces: true,
                    ..DropLog::default()
                },
                new_pods: NewPods {
                    fail_closed: true,
                    pod_cidrs: vec![Cidr::parse("10.244.3.0/24").unwrap()],
                },
                revoke_established: true,
            },
        ),
        (
            "node n2, all off",
            Options {
                node: Some("n2".into()),
                drop_log: DropLog::default(),
                new_pods: NewPods {
                    fail_closed: false,
                    pod_cidrs: vec![],
                },
                revoke_established: false,
            },
        ),
        ("all pods, defaults", Options::default()),
    ]
}

fn same(what: &str, step: usize, got: &Compiled, want: &Compiled, path: Path) {
    let (g, w) = (script(&got.ruleset), script(&want.ruleset));
    assert!(
        g == w,
        "{what}, event {step} ({path:?}): rendering differs\n--- incremental\n{g}\n--- full\n{w}"
    );
    assert_eq!(got.ruleset, want.ruleset, "{what}, event {step}: ruleset");
    assert_eq!(
        got.drop_log, want.drop_log,
        "{what}, event {step}: drop-log index"
    );
    assert_eq!(
        got.enforced_pods, want.enforced_pods,
        "{what}, event {step}: enforced pods"
    );
}

/// Compiles by path: (incremental, partial, full), of every event and of
/// the policy events.
#[derive(Debug, Default)]
struct Tally {
    all: (usize, usize, usize),
    policies: (usize, usize, usize),
}

fn count(t: &mut (usize, usize, usize), path: Path) {
    match path {
        Path::Incremental => t.0 += 1,
        Path::Partial => t.1 += 1,
        Path::Full(_) => t.2 += 1,
    }
}

/// Runs one sequence; returns its compile counts.
fn run(seed: u64, events: usize) -> Tally {
    let mut tally = Tally::default();
    for (what, opts) in option_sets() {
        let mut r = Rng::new(seed);
        let mut c = cluster(&mut r);
        let mut state = State::default();
        let (first, path) = state.compile(&c, vec![], &Changes::default(), &opts);
        assert!(matches!(path, Path::Full(_)), "the first compile is full");
        same(what, 0, &first, &compile_cluster(&c, vec![], &opts), path);
        let mut next = 0;
        let mut prev = first.ruleset;
        for step in 1..=events {
            let (changes, kind) = event(&mut r, &mut c, &mut next);
            let (got, path) = compile_checking_edits(&mut state, &c, &changes, &opts, &prev, step);
            if kind == Kind::Other {
                assert!(
                    matches!(path, Path::Full(_)),
                    "{what}, event {step}: a namespace change took {path:?}"
                );
            }
            count(&mut tally.all, path);
            if kind == Kind::Policies {
                count(&mut tally.policies, path);
            }
            let what = format!("{what}, {kind:?} {changes:?}");
            same(&what, step, &got, &compile_cluster(&c, vec![], &opts), path);
            prev = got.ruleset;
        }
    }
    tally
}

/// `State::compile_edits` (the agent's path) as a whole result; on the
/// incremental path its edits, applied to the previous ruleset, must give
/// the new one, and their script must be what `diff` says of the two.
fn compile_checking_edits(
    state: &mut State,
    c: &Cluster,
    changes: &Changes,
    opts: &Options,
    prev: &Ruleset,
    step: usize,
) -> (Compiled, Path) {
    let (out, path) = state.compile_edits(c, vec![], changes, opts);
    let current = || state.current().expect("an incremental result is indexed");
    match &out {
        Output::Full(_) => {}
        Output::Reshaped(r) => {
            let current = current();
            let mut mirror = prev.clone();
            r.touched.apply_to(&mut mirror, current);
            assert_eq!(
                &mirror, current,
                "event {step}: previous + what the partial compile names != new"
            );
            assert_eq!(
                staged_touched(prev, current, &r.touched, current.generation),
                staged(prev, current),
                "event {step}: stages over the names touched != stages over the whole rulesets"
            );
        }
        Output::Edited(e) => {
            let current = current();
            let mut edited = prev.clone();
            assert!(
                e.edits.apply(&mut edited),
                "event {step}: edits name a missing set"
            );
            assert_eq!(&edited, current, "event {step}: previous + edits != new");
            assert_eq!(
                e.edits.script(),
                diff(prev, current),
                "event {step}: edits' script != diff"
            );
        }
    }
    (out.into_compiled(current), path)
}

fn cases() -> u32 {
    std::env::var("NFTPOL_INCR_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Events per sequence.
const EVENTS: usize = 40;

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_full_after_every_event(seed in any::<u64>()) {
        run(seed, EVENTS);
    }
}

/// Not vacuous: over fixed seeds most events take the incremental path,
/// pods joining or leaving groups take the partial one, and most policy
/// events take the policy step (the partial path, or the incremental one
/// when the policy touches no chain of the node).
#[test]
fn most_pod_events_are_incremental() {
    let (mut inc, mut partial, mut full) = (0, 0, 0);
    let mut policies = (0, 0, 0);
    for seed in 0..64 {
        let t = run(seed, EVENTS);
        inc += t.all.0;
        partial += t.all.1;
        full += t.all.2;
        policies.0 += t.policies.0;
        policies.1 += t.policies.1;
        policies.2 += t.policies.2;
    }
    eprintln!("incremental {inc}, partial {partial}, full {full}; policy events {policies:?}");
    let (pi, pp, pf) = policies;
    assert!(
        pp > 0 && (pi + pp) * 3 > (pi + pp + pf) * 2,
        "policy events by path (incremental, partial, full): {policies:?}"
    );
    assert!(
        (inc + partial) * 2 > inc + partial + full,
        "incremental {inc} + partial {partial} of {} compiles",
        inc + partial + full
    );
    assert!(partial * 50 > inc + partial + full, "partial {partial}");
}
