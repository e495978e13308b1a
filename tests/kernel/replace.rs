//! A whole-table replacement in the real kernel: no packet passes while it commits.
//!
//! Replacing the table by `delete table` + create loses packets the other way: the new
//! table's base chain is registered while the transaction is prepared, ahead of the old one at
//! equal priority, with no active rules until the commit; the old one has none after it. A
//! packet that meets the new chain just before the commit and the old one just after is
//! accepted by both. That is what let the occasional datagram through in the new-pod test's
//! structural variant. The enforcer's replacement keeps the base chains (flush, delete the
//! rest, create), so a packet meets one chain that switches from old rules to new in one step.
//!
//! To see the race at all, a foreign table's chain at the same priority, registered after
//! nftpol's (so it runs between the new and the old nftpol chain), walks a few thousand rules
//! and widens the window to tens of microseconds. The control run replaces the table with
//! `delete table` and must let datagrams through (the test can see the race); the enforcer's
//! replacement must let none through. Figures are printed.
//!
//! Needs root and network namespaces.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nftpol::core::nft::render;
use nftpol::core::nft::ruleset::Ruleset;
use nftpol::kernel::enforcer::{Applied, Enforcer};
use nftpol_testkit as kit;

use kit::{Family, Shape, TopoSpec, Topology, netns};

/// The flood's destination port (no server listens on it but the sink).
const PORT: u16 = 7777;
/// Replacements per run.
const SWAPS: usize = 150;
/// Rules of the foreign chain that widens the window.
const SLOW_RULES: usize = 3000;

/// Pod `b` isolated for ingress with nothing allowed; with `variant`, a second policy selects
/// it too (another policy chain, another set: a structural change from the first).
fn ruleset(topo: &Topology, variant: bool) -> Ruleset {
    let ip = |p: &str, f: Family| topo.pod_ip(p, f).to_string();
    let pod = |name: &str, app: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: ns, labels: {{app: {app}}}}}\n\
             spec: {{nodeName: n1, containers: [{{name: c, image: i}}]}}\n\
             status: {{phase: Running, podIPs: [{{ip: {}}}, {{ip: {}}}]}}\n---\n",
            ip(name, Family::V4),
            ip(name, Family::V6)
        )
    };
    let mut yaml = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\n");
    yaml.push_str(&pod("a", "a"));
    yaml.push_str(&pod("b", "b"));
    yaml.push_str(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-b, namespace: ns}\n\
         spec: {podSelector: {matchLabels: {app: b}}, policyTypes: [Ingress]}\n",
    );
    if variant {
        yaml.push_str(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: nobody-to-b, namespace: ns}\n\
             spec: {podSelector: {matchLabels: {app: b}}, ingress: [{from: [{podSelector: \
             {matchLabels: {app: nobody}}}]}]}\n",
        );
    }
    let mut objs = nftpol::core::k8s::Objects::default();
    let mut diags = Vec::new();
    nftpol::core::k8s::parse_into(&yaml, "replace.yaml", &mut objs, &mut diags);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let opts = nftpol::core::compile::Options {
        node: Some("n1".into()),
        ..Default::default()
    };
    nftpol::core::compile::compile_objects(&objs, &opts).ruleset
}

/// A foreign table whose forward chain (priority filter, like nftpol's) walks `SLOW_RULES`
/// rules that never match.
fn slow_table() -> String {
    let mut s = String::from(
        "table inet slow {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n",
    );
    for i in 0..SLOW_RULES {
        let _ = writeln!(
            s,
            "\t\tip daddr 192.0.2.{} udp dport {} drop",
            i % 250 + 1,
            1000 + i
        );
    }
    s.push_str("\t}\n}\n");
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// `render::script`: delete the table, create it.
    DeleteTable,
    /// The enforcer: keep the base chains; stages from its mirror.
    Enforcer,
    /// A new enforcer each time (as after a restart): stages from a listing's names.
    FreshEnforcer,
}

/// Loads the first table, then the slow table, then floods a → b while replacing nftpol's
/// table `SWAPS` times between two structurally different versions. Returns (sent, through).
fn run(how: How) -> (usize, usize) {
    let spec = TopoSpec::two_nodes("n1", "n2")
        .pod_at("a", "n1", 10)
        .pod_at("b", "n1", 11);
    let topo = Topology::build(Shape::Routed, &spec).expect("topology");
    let n1 = topo.node_netns("n1").to_string();
    let tables = [ruleset(&topo, false), ruleset(&topo, true)];
    let mut enforcer = netns::in_netns(&n1, || {
        let mut e = Enforcer::new("nft");
        assert_eq!(e.sync(&tables[0]).unwrap(), Applied::Full);
        e
    })
    .unwrap();
    netns::exec(&n1, &["nft", "-f", "-"], Some(&slow_table())).expect("the slow table");

    let stop = Arc::new(AtomicBool::new(false));
    let counts = kit::udp::sink(topo.pod_netns("b"), PORT, stop.clone());
    let to = [Family::V4, Family::V6]
        .map(|f| SocketAddr::new(topo.pod_ip("b", f), PORT))
        .to_vec();
    let tx = kit::udp::sender(topo.pod_netns("a"), to, None, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    for i in 1..=SWAPS {
        let rs = &tables[i % 2];
        match how {
            How::DeleteTable => {
                netns::exec(&n1, &["nft", "-f", "-"], Some(&render::script(rs)))
                    .expect("a delete-table replacement");
            }
            How::Enforcer => {
                let applied = netns::in_netns(&n1, || enforcer.sync(rs)).unwrap().unwrap();
                assert_eq!(applied, Applied::Full, "swap {i} is structural");
            }
            How::FreshEnforcer => {
                let applied = netns::in_netns(&n1, || Enforcer::new("nft").sync(rs))
                    .unwrap()
                    .unwrap();
                assert_eq!(applied, Applied::Full, "swap {i}: a new enforcer replaces");
            }
        }
    }
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let sent = tx.join().unwrap();
    let through: usize = counts.lock().unwrap().values().sum();
    println!(
        "{how:?}: {SWAPS} replacements in {took:?}, {sent} datagrams sent a -> b, {through} through"
    );
    (sent, through)
}

#[test]
fn a_full_replacement_lets_no_packet_past_both_tables() {
    let (sent, through) = run(How::Enforcer);
    assert!(sent > 0, "the flood sent nothing");
    let (fresh_sent, fresh_through) = run(How::FreshEnforcer);
    assert!(fresh_sent > 0, "the flood sent nothing");
    assert_eq!(
        fresh_through, 0,
        "a new enforcer's replacement (stages over listed names) let {fresh_through} of \
         {fresh_sent} denied datagrams through"
    );
    let (control_sent, control_through) = run(How::DeleteTable);
    assert!(control_sent > 0, "the control flood sent nothing");
    assert_eq!(
        through, 0,
        "the enforcer's replacement let {through} of {sent} denied datagrams through"
    );
    assert!(
        control_through > 0,
        "the control (delete table, then create) let none of {control_sent} through: the test \
         does not widen the race enough to see it"
    );
}
