//! Element deltas in the real kernel: after any sequence of membership
//! changes applied as element updates, the kernel table equals a fresh full
//! load of the same state. Structural changes fall back to a full replacement.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use nftpol::core::compile::Options;
use nftpol::core::k8s::Objects;
use nftpol::core::nft::delta::{Present, Update, diff, staged, staged_over};
use nftpol_testkit::listing::{self, Counters};
use nftpol_testkit::netns::{Netns, in_new_netns};
use serde_json::Value;

/// Runs `nft args` in `ns` with `stdin`; panics with nft's error and the input.
fn nft(ns: &Netns, args: &[&str], stdin: &str) -> String {
    let argv: Vec<&str> = std::iter::once("nft").chain(args.iter().copied()).collect();
    ns.exec(&argv, Some(stdin))
        .unwrap_or_else(|e| panic!("nft {args:?} failed: {e:#}"))
}

/// The table of `ns`, normalised with counters kept: a delta must not lose them.
fn table(ns: &Netns) -> Value {
    listing::table_in(ns.name(), Counters::Kept).expect("a table inet nftpol")
}

/// The upstream cluster with the upstream-xyz policies, and the loader's diagnostics.
pub(crate) fn upstream() -> (Objects, Vec<nftpol::core::diag::Diagnostic>) {
    let dir = nftpol_testkit::cases::case("upstream");
    let mut objs = Objects::default();
    let mut diags = Vec::new();
    for f in ["cluster.yaml", "../upstream-xyz/policies.yaml"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        nftpol::core::k8s::parse_into(&text, f, &mut objs, &mut diags);
    }
    (objs, diags)
}

/// Two namespaces (`live` with the node-1 table of `objs` loaded, `fresh` empty), the
/// options, and that table.
fn start(
    objs: &Objects,
    live: &str,
    fresh: &str,
) -> (Netns, Netns, Options, nftpol::core::nft::ruleset::Ruleset) {
    let (live, fresh) = (Netns::new(live).unwrap(), Netns::new(fresh).unwrap());
    let opts = Options {
        node: Some("node-1".to_string()),
        ..Default::default()
    };
    let current = nftpol::core::compile::compile_objects(objs, &opts).ruleset;
    nft(
        &live,
        &["-f", "-"],
        &nftpol::core::nft::render::script(&current),
    );
    (live, fresh, opts, current)
}

/// Deterministic pseudo-random numbers (no dependency, stable across runs).
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn set_labels(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    k: &str,
    v: Option<&str>,
) {
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    match v {
        Some(v) => labels.insert(k.to_string(), v.to_string()),
        None => labels.remove(k),
    };
}

/// One random membership change; returns what it did.
fn mutate(objs: &mut Objects, rng: &mut Lcg, next_ip: &mut u8) -> String {
    let vals = ["a", "b", "c"];
    match rng.below(6) {
        0 | 1 if !objs.pods.is_empty() => {
            let i = rng.below(objs.pods.len());
            let key = ["pod", "app", "tier"][rng.below(3)];
            let val = if rng.below(4) == 0 {
                None
            } else {
                Some(vals[rng.below(3)])
            };
            set_labels(&mut objs.pods[i].1.metadata, key, val);
            format!("relabel pod {i} {key}={val:?}")
        }
        2 if objs.pods.len() > 2 => {
            let i = rng.below(objs.pods.len());
            objs.pods.remove(i);
            format!("delete pod {i}")
        }
        3 if !objs.namespaces.is_empty() => {
            let i = rng.below(objs.namespaces.len());
            let val = if rng.below(3) == 0 {
                None
            } else {
                Some(vals[rng.below(3)])
            };
            set_labels(&mut objs.namespaces[i].1.metadata, "ns", val);
            format!("relabel namespace {i} ns={val:?}")
        }
        _ => {
            // A new pod: a copy of an existing one with a fresh name and addresses.
            let i = rng.below(objs.pods.len());
            let mut p = objs.pods[i].clone();
            *next_ip += 1;
            p.1.metadata.name = Some(format!("new-{next_ip}"));
            let node = if rng.below(2) == 0 { 1 } else { 2 };
            p.1.spec.as_mut().unwrap().node_name = Some(format!("node-{node}"));
            let st = p.1.status.as_mut().unwrap();
            st.pod_ip = None;
            st.pod_ips = Some(vec![
                k8s_openapi::api::core::v1::PodIP {
                    ip: format!("10.244.{node}.{next_ip}"),
                },
                k8s_openapi::api::core::v1::PodIP {
                    ip: format!("fd00:10:244:{node}::{next_ip:x}"),
                },
            ]);
            objs.pods.push(p);
            format!("add pod new-{next_ip}")
        }
    }
}

#[test]
fn element_deltas_reach_the_same_kernel_table_as_full_loads() {
    let (mut objs, mut diags) = upstream();
    // Policies whose selectors the random relabels keep moving pods in and out of.
    let extra = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: by-app, namespace: x}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [a, b]}]}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: b}}, podSelector: {matchLabels: {tier: a}}}], ports: [{port: serve-80-tcp}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-by-tier, namespace: y}
spec:
  podSelector: {matchLabels: {tier: c}}
  egress: [{to: [{podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [a]}]}}], ports: [{port: serve-81-udp, protocol: UDP}, {port: 80}]}]
"#;
    nftpol::core::k8s::parse_into(extra, "extra", &mut objs, &mut diags);
    assert!(
        !objs.pods.is_empty() && objs.policies.len() >= 3,
        "{diags:?}"
    );
    let (live, fresh, opts, mut current) = start(&objs, "live", "fresh");
    let mut rng = Lcg(7);
    let mut next_ip = 100u8;
    let (mut deltas, mut fulls, mut in_one, mut nothing) = (0, 0, 0, 0);
    for step in 0..100 {
        let what = mutate(&mut objs, &mut rng, &mut next_ip);
        let new = nftpol::core::compile::compile_objects(&objs, &opts).ruleset;
        match diff(&current, &new) {
            Update::None => nothing += 1,
            Update::Elements { script, .. } => {
                deltas += 1;
                nft(&live, &["-f", "-"], &script);
            }
            // What the enforcer does: in stages when every kept object can be
            // updated in place, otherwise in one transaction keeping the base chains.
            Update::Full => match staged(&current, &new) {
                Some(stages) => {
                    fulls += 1;
                    for stage in &stages {
                        nft(&live, &["-f", "-"], &stage.script);
                    }
                }
                None => {
                    in_one += 1;
                    nft(
                        &live,
                        &["-f", "-"],
                        &nftpol::core::nft::render::replacement(&new, &Present::of(&current)),
                    );
                }
            },
        }
        nft(
            &fresh,
            &["-f", "-"],
            &nftpol::core::nft::render::script(&new),
        );
        let (got, want) = (table(&live), table(&fresh));
        assert!(
            got == want,
            "step {step} ({what}): kernel tables differ:\n{}",
            listing::diff(&got, &want)
        );
        current = new;
    }
    println!(
        "100 changes: {deltas} element deltas, {fulls} staged structural changes, {in_one} \
         one-transaction replacements, {nothing} no-ops"
    );
    assert!(
        deltas >= 30 && deltas > 5 * fulls,
        "membership changes must mostly be deltas ({deltas} deltas, {fulls} full)"
    );
    assert!(
        fulls >= 1,
        "a pod joining a new policy group needs a full replacement"
    );
}

/// One random change of the structural tests: a policy removed (parked),
/// a parked one restored, or a pod change ([`mutate`]); says which.
pub(crate) fn structural_change(
    objs: &mut Objects,
    parked: &mut Vec<(
        nftpol::core::diag::Source,
        k8s_openapi::api::networking::v1::NetworkPolicy,
    )>,
    rng: &mut Lcg,
    next_ip: &mut u8,
) -> String {
    match rng.below(3) {
        0 if objs.policies.len() > 1 => {
            let i = rng.below(objs.policies.len());
            parked.push(objs.policies.remove(i));
            format!("remove policy {i}")
        }
        1 if !parked.is_empty() => {
            objs.policies.push(parked.remove(rng.below(parked.len())));
            "restore a policy".to_string()
        }
        _ => mutate(objs, rng, next_ip),
    }
}

/// Structural changes (policies removed and restored, pods joining and leaving groups) go in
/// as the enforcer's stages (every other one from the names a terse listing gives, as after a
/// restart); after each one the kernel table equals a fresh load, and every
/// stage is a transaction the kernel accepts (so what stage 1 creates never refers to what
/// stage 3 deletes).
#[test]
fn structural_changes_in_stages_reach_the_same_kernel_table_as_full_loads() {
    let (mut objs, _) = upstream();
    let (live, fresh, opts, mut current) = start(&objs, "staged", "staged-fresh");
    let mut rng = Lcg(11);
    let mut next_ip = 100u8;
    let mut parked = Vec::new();
    let (mut staged_n, mut in_one, mut over_names, mut stages_seen) = (0, 0, 0, [0usize; 4]);
    for step in 0..80 {
        let what = structural_change(&mut objs, &mut parked, &mut rng, &mut next_ip);
        let new = nftpol::core::compile::compile_objects(&objs, &opts).ruleset;
        match diff(&current, &new) {
            Update::None => {}
            Update::Elements { script, .. } => {
                nft(&live, &["-f", "-"], &script);
            }
            // Every other one as after a restart: only the names the kernel lists are known.
            Update::Full if step % 2 == 1 => {
                let names = nft(&live, &["-j", "-t", "list", "table", "inet", "nftpol"], "");
                let present = nftpol::kernel::listing::present(&names).expect("a listing");
                let stages = staged_over(&present, &new).expect("no chain changes kind");
                over_names += 1;
                for stage in &stages {
                    nft(&live, &["-f", "-"], &stage.script);
                }
            }
            Update::Full => match staged(&current, &new) {
                Some(stages) => {
                    staged_n += 1;
                    stages_seen[stages.len()] += 1;
                    for stage in &stages {
                        nft(&live, &["-f", "-"], &stage.script);
                    }
                }
                None => {
                    in_one += 1;
                    let script =
                        nftpol::core::nft::render::replacement(&new, &Present::of(&current));
                    nft(&live, &["-f", "-"], &script);
                }
            },
        }
        nft(
            &fresh,
            &["-f", "-"],
            &nftpol::core::nft::render::script(&new),
        );
        let (got, want) = (table(&live), table(&fresh));
        assert!(
            got == want,
            "step {step} ({what}): kernel tables differ:\n{}",
            listing::diff(&got, &want)
        );
        current = new;
    }
    println!(
        "80 changes: {staged_n} staged structural changes (by number of stages: {:?}), \
         {over_names} staged over the listed names, {in_one} in one transaction",
        &stages_seen[1..]
    );
    assert!(staged_n >= 5, "too few structural changes: {staged_n}");
    assert!(
        over_names >= 5,
        "too few changes over listed names: {over_names}"
    );
    assert!(
        stages_seen[3] >= 1,
        "no change needed all three stages: {stages_seen:?}"
    );
}

#[test]
fn a_pod_relabel_is_an_element_delta_and_a_new_policy_is_not() {
    let dir = nftpol_testkit::cases::case("upstream-xyz");
    let (mut objs, _) = nftpol::core::k8s::load_paths(&[dir]);
    let opts = Options::default();
    let before = nftpol::core::compile::compile_objects(&objs, &opts).ruleset;
    // Relabel a pod of namespace y so it is no longer `pod: a` (peer sets change).
    let i = objs
        .pods
        .iter()
        .position(|(_, p)| p.metadata.namespace.as_deref() == Some("y"))
        .unwrap();
    set_labels(&mut objs.pods[i].1.metadata, "pod", Some("zz"));
    let relabelled = nftpol::core::compile::compile_objects(&objs, &opts).ruleset;
    assert!(matches!(
        diff(&before, &relabelled),
        Update::Elements { .. } | Update::None
    ));
    let mut extra = objs.policies[0].clone();
    extra.1.metadata.name = Some("another".into());
    objs.policies.push(extra);
    let with_policy = nftpol::core::compile::compile_objects(&objs, &opts).ruleset;
    assert_eq!(
        diff(&relabelled, &with_policy),
        Update::Full,
        "a new policy changes structure"
    );
    assert_eq!(diff(&with_policy, &with_policy), Update::None);
}

#[test]
fn enforcer_deltas_verification_and_drift_repair() {
    use nftpol::kernel::enforcer::{Applied, Enforcer};
    in_new_netns(|| {
        let root = nftpol_testkit::cases::testdata();
        let (mut objs, _) = nftpol::core::k8s::load_paths(&[root.join("upstream-xyz")]);
        let opts = Options::default();
        let mut e = Enforcer::new("nft");
        let first = nftpol::core::compile::compile_objects(&objs, &opts).ruleset;
        assert_eq!(
            e.sync(&first).unwrap(),
            Applied::Full,
            "the first sync replaces the table"
        );
        assert_eq!(e.sync(&first).unwrap(), Applied::Unchanged);
        assert!(e.verify().unwrap(), "a freshly applied table verifies");

        // A pod leaves: an element delta.
        objs.pods.pop();
        let second = nftpol::core::compile::compile_objects(&objs, &opts).ruleset;
        assert!(matches!(e.sync(&second).unwrap(), Applied::Delta { deleted, .. } if deleted > 0));
        assert!(e.verify().unwrap());

        // Someone flushes a map behind our back: verify notices, the next sync repairs.
        let out = Command::new("nft")
            .args(["flush", "map", "inet", "nftpol", "ingress-pods-v4"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(!e.verify().unwrap(), "drift is detected");
        assert_eq!(
            e.sync(&second).unwrap(),
            Applied::Full,
            "drift is repaired by a full replacement"
        );
        assert!(e.verify().unwrap());

        // Someone deletes the whole table.
        Command::new("nft")
            .args(["delete", "table", "inet", "nftpol"])
            .status()
            .unwrap();
        assert!(!e.verify().unwrap());
        assert_eq!(e.sync(&second).unwrap(), Applied::Full);

        // Every testdata case verifies after a full load (the listing parser
        // understands every object shape nftpol emits).
        for entry in std::fs::read_dir(&root).unwrap() {
            let dir = entry.unwrap().path();
            if !dir.is_dir()
                || nftpol_testkit::cases::NOT_CASES
                    .iter()
                    .any(|n| dir.ends_with(n))
            {
                continue;
            }
            let (objs, _) = nftpol::core::k8s::load_paths(std::slice::from_ref(&dir));
            let rs = nftpol::core::compile::compile_objects(&objs, &opts).ruleset;
            e.invalidate();
            e.sync(&rs).unwrap();
            assert!(
                e.verify().unwrap(),
                "{} does not verify after loading",
                dir.display()
            );
        }
        e.remove_table().unwrap();
        assert!(
            !Command::new("nft")
                .args(["list", "table", "inet", "nftpol"])
                .output()
                .unwrap()
                .status
                .success()
        );
        e.remove_table().unwrap(); // idempotent
    });
}

#[test]
fn a_failed_apply_keeps_the_previous_table_and_the_next_sync_is_full() {
    use nftpol::kernel::enforcer::{Applied, Enforcer};
    in_new_netns(|| {
        let root = nftpol_testkit::cases::testdata();
        let (objs, _) = nftpol::core::k8s::load_paths(&[root.join("upstream-xyz")]);
        let good = nftpol::core::compile::compile_objects(&objs, &Options::default()).ruleset;
        let mut e = Enforcer::new("nft");
        e.sync(&good).unwrap();
        let before = Command::new("nft")
            .args(["list", "table", "inet", "nftpol"])
            .output()
            .unwrap()
            .stdout;
        // A ruleset the kernel rejects: a rule jumping to a chain that does not exist.
        let mut bad = good.clone();
        bad.chains[0].1.rules.insert(
            0,
            nftpol::core::nft::ruleset::Rule {
                matches: vec![],
                verdict: nftpol::core::nft::ruleset::Verdict::Jump("no-such-chain".into()),
                comment: None,
            },
        );
        assert!(e.sync(&bad).is_err(), "the kernel rejects it");
        let after = Command::new("nft")
            .args(["list", "table", "inet", "nftpol"])
            .output()
            .unwrap()
            .stdout;
        assert_eq!(before, after, "the previous table stays in force");
        assert!(
            e.mirror().is_none(),
            "the mirror is distrusted after a failure"
        );
        assert_eq!(e.sync(&good).unwrap(), Applied::Full);
    });
}

/// Runs an `nft -f` script in the current namespace; false if nft rejects it.
fn nft_script(script: &str) -> bool {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    child.wait().unwrap().success()
}

#[test]
fn verify_compares_element_values_not_only_counts() {
    use nftpol::core::nft::render::element;
    use nftpol::core::nft::ruleset::{Element, SetKind};
    use nftpol::kernel::enforcer::{Applied, Enforcer};
    use std::net::IpAddr;
    in_new_netns(|| {
        let root = nftpol_testkit::cases::testdata();
        let fresh = |v6: bool| -> IpAddr {
            if v6 {
                "2001:db8:ee::77".parse().unwrap()
            } else {
                "198.51.100.77".parse().unwrap()
            }
        };
        let mut tested = std::collections::BTreeSet::new();
        for case in ["upstream-xyz", "ipblock-except-v4", "named-ports"] {
            let (objs, _) = nftpol::core::k8s::load_paths(&[root.join(case)]);
            let rs = nftpol::core::compile::compile_objects(&objs, &Options::default()).ruleset;
            let mut e = Enforcer::new("nft");
            // Each tamper swaps one element for another, so every count stays the same.
            let mut tampers: Vec<(String, String)> = Vec::new();
            for (name, set) in &rs.sets {
                let Some(old) = set.elements.iter().next() else {
                    continue;
                };
                let v6 = |ip: &IpAddr| ip.is_ipv6();
                let (what, new) = match (set.kind, old) {
                    (SetKind::Addr(_), Element::Addr(a)) => ("addr", fresh(v6(a)).to_string()),
                    (SetKind::AddrInterval(_), Element::Range(r)) => (
                        "interval",
                        fresh(r.family == nftpol::core::model::Family::V6).to_string(),
                    ),
                    (SetKind::AddrPair(_), Element::AddrPair(a, _)) => {
                        ("pair", format!("{0} . {0}", fresh(v6(a))))
                    }
                    (SetKind::AddrProtoPort(_), Element::AddrProtoPort(a, p, n)) => (
                        "named-port",
                        format!("{} . {} . {n}", fresh(v6(a)), p.nft()),
                    ),
                    _ => continue,
                };
                tampers.push((
                    format!("{what} set {name}"),
                    format!(
                        "delete element inet nftpol {name} {{ {} }}\nadd element inet nftpol {name} {{ {new} }}\n",
                        element(old)
                    ),
                ));
            }
            for (name, map) in &rs.maps {
                let Some((ip, target)) = map.elements.iter().next() else {
                    continue;
                };
                // Another group chain of the same map (any chain could loop back into it).
                let Some(other) = map.elements.values().find(|c| *c != target) else {
                    continue;
                };
                tampers.push((
                    format!("verdict map {name}"),
                    format!(
                        "delete element inet nftpol {name} {{ {ip} }}\nadd element inet nftpol {name} {{ {ip} : jump {other} }}\n"
                    ),
                ));
            }
            for (what, script) in tampers {
                e.invalidate();
                assert_eq!(e.sync(&rs).unwrap(), Applied::Full);
                assert!(e.verify().unwrap(), "{case}: verifies before tampering");
                assert!(nft_script(&script), "{case}: tamper {what}:\n{script}");
                assert!(
                    !e.verify().unwrap(),
                    "{case}: a swapped element in {what} is drift even though counts agree"
                );
                assert_eq!(e.sync(&rs).unwrap(), Applied::Full, "{case}: repaired");
                assert!(e.verify().unwrap(), "{case}: verifies after repair");
                tested.insert(what.split(' ').next().unwrap().to_string());
            }
        }
        for kind in ["addr", "interval", "pair", "named-port", "verdict"] {
            assert!(tested.contains(kind), "no {kind} tamper was exercised");
        }
    });
}
