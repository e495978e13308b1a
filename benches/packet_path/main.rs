//! Packet-path cost of the ruleset, with real packets between two pods in
//! network namespaces (routed topology, both pods on `node-01`).
//!
//! Modes, alternated round by round:
//! - `a`  no table at all (no conntrack either);
//! - `a2` a table holding only `ct state established,related accept` (the
//!   conntrack cost every stateful enforcer pays);
//! - `b`  nftpol's table for `node-01` of the large synthetic cluster
//!   (revocation of established flows on, the default);
//! - `b-norev` the same table compiled with `--revoke-established=false`;
//! - `b+cnp` nftpol's table for `node-01` of the same cluster with 500
//!   ClusterNetworkPolicies (Admin and Baseline) added
//!   ([`synth::add_cluster_policies`]);
//! - `c`  a linear baseline for the same policies, shaped like the classic
//!   iptables-era enforcers (`linear.rs` here).
//!
//! The server is the pod whose allowed connection from some local client
//! matches deepest inside its chain of the linear baseline, and it is moved
//! to the end of the baseline's dispatch order: the worst case for a linear
//! ruleset. Before measuring, `b` and `c` must let the flow through and drop
//! a flow no policy allows, and the baseline must agree with nftpol's table
//! (traced) on every allowed local SYN the choice looked at and a
//! seventh of the denied ones.
//!
//! Figures: new TCP connections per second (every SYN walks the ruleset),
//! request/response transactions per second on one connection, and bulk
//! throughput of one stream. `cargo bench --bench packet_path` runs the large
//! scale (`NFTPOL_ROUNDS`, default 5); under `cargo test` it runs the medium
//! scale briefly as a smoke test. With `NFTPOL_PLOTS=DIR` it writes
//! `DIR/perf-packet-path.png`.

use nftpol_testkit as kit;

mod connrate;
mod linear;
use nftpol_testkit::plot;
use nftpol_testkit::synth;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nftpol::core::compile::Options;
use nftpol::core::model::Protocol;
use nftpol_testkit::trace::{L4, Outcome, Packet, trace};

use kit::{Shape, TopoSpec, Topology, netns};
use linear::Linear;

/// The node whose table is measured.
const NODE: &str = "node-01";
/// A port no policy allows (the server listens on it too).
const DENY_PORT: u16 = 5555;
/// Ports the synthetic policies allow over TCP, in some combination.
const CANDIDATE_PORTS: [u16; 8] = [8080, 9090, 9100, 8443, 443, 8000, 8050, 8100];
/// Client threads opening connections.
const CLIENTS: usize = 4;

const CT_ONLY: &str = "table inet ctonly {\n  chain forward {\n    \
    type filter hook forward priority filter; policy accept;\n    \
    ct state established,related accept\n  }\n}\n";

struct LocalPod {
    v4: Ipv4Addr,
    v6: IpAddr,
}

fn local_pods(objs: &nftpol::core::k8s::Objects) -> Vec<LocalPod> {
    objs.pods
        .iter()
        .filter(|(_, p)| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(NODE))
        .filter_map(|(_, p)| {
            let ips = p.status.as_ref()?.pod_ips.as_ref()?;
            let ips: Vec<IpAddr> = ips.iter().filter_map(|i| i.ip.parse().ok()).collect();
            let v4 = ips.iter().find_map(|i| match i {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })?;
            let v6 = *ips.iter().find(|i| i.is_ipv6())?;
            Some(LocalPod { v4, v6 })
        })
        .collect()
}

/// What nftpol's table does with a SYN from `c` to `s:port`.
fn nftpol_allows(
    rs: &nftpol::core::nft::ruleset::Ruleset,
    c: Ipv4Addr,
    s: Ipv4Addr,
    port: u16,
) -> bool {
    let pkt = Packet {
        src: c.into(),
        dst: s.into(),
        l4: L4::Port(Protocol::Tcp, port),
        established: false,
    };
    trace(rs, &pkt).expect("nftpol ruleset traces").outcome == Outcome::Accept
}

/// What the linear baseline does with that SYN, and how many rules it walks.
fn linear_walk(lin: &Linear, c: Ipv4Addr, s: Ipv4Addr, port: u16) -> (bool, usize) {
    let mut walked = 1; // ct state
    if let Some(e) = lin.egress.iter().position(|p| p.ip == c) {
        walked += e + 1;
        match lin.egress[e]
            .rules
            .iter()
            .position(|r| r.matches(s, Protocol::Tcp, port))
        {
            Some(i) => walked += i + 1,
            None => return (false, walked + lin.egress[e].rules.len()),
        }
    } else {
        walked += lin.egress.len() + 1;
    }
    match lin.ingress.iter().position(|p| p.ip == s) {
        None => (true, walked + lin.ingress.len() + 1),
        Some(i) => {
            walked += i + 1;
            match lin.ingress[i]
                .rules
                .iter()
                .position(|r| r.matches(c, Protocol::Tcp, port))
            {
                Some(k) => (true, walked + k + 1),
                None => (false, walked + lin.ingress[i].rules.len() + 1),
            }
        }
    }
}

struct Choice {
    server: usize,
    client: usize,
    port: u16,
    walked: usize,
    checked: usize,
}

/// Picks the allowed local flow whose SYN matches deepest inside the
/// server's chain of the linear baseline, and moves that server to the end
/// of the baseline's dispatch order: the worst place for a linear ruleset.
/// Cross-checks the baseline against nftpol's table on every SYN it looks at.
/// The flow must also be allowed by `also` (the table with the
/// ClusterNetworkPolicies): pairs it denies are passed over.
fn choose(
    rs: &nftpol::core::nft::ruleset::Ruleset,
    also: &nftpol::core::nft::ruleset::Ruleset,
    lin: &mut Linear,
    pods: &[LocalPod],
) -> Result<Choice> {
    let mut checked = 0;
    // (depth in the server's chain, server index in lin.ingress, client, port)
    let mut best: Option<(usize, usize, usize, u16)> = None;
    for (si, srv) in lin.ingress.iter().enumerate() {
        if !pods.iter().any(|p| p.v4 == srv.ip) {
            continue;
        }
        for (ci, c) in pods.iter().enumerate().filter(|(_, c)| c.v4 != srv.ip) {
            for port in CANDIDATE_PORTS.into_iter().chain([DENY_PORT]) {
                let (theirs, _) = linear_walk(lin, c.v4, srv.ip, port);
                // Tracing every pair costs seconds at the large scale: trace
                // every allowed pair and one denied pair in seven.
                if !theirs && !(si + ci + port as usize).is_multiple_of(7) {
                    continue;
                }
                let ours = nftpol_allows(rs, c.v4, srv.ip, port);
                checked += 1;
                ensure!(
                    ours == theirs,
                    "baseline disagrees with nftpol on {} -> {}:{port}: nftpol {ours}, linear {theirs}",
                    c.v4,
                    srv.ip
                );
                if !ours || !nftpol_allows(also, c.v4, srv.ip, port) {
                    continue;
                }
                let depth = srv
                    .rules
                    .iter()
                    .position(|r| r.matches(c.v4, Protocol::Tcp, port))
                    .map_or(0, |k| k + 1);
                if best.is_none_or(|b| depth > b.0) {
                    best = Some((depth, si, ci, port));
                }
            }
        }
    }
    let Some((_, si, client, port)) = best else {
        bail!("no local pod pair on {NODE} is allowed to connect on the candidate ports")
    };
    let srv = lin.ingress.remove(si);
    lin.ingress.push(srv);
    let ip = lin
        .ingress
        .last()
        .map(|s| s.ip)
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let server = pods.iter().position(|p| p.v4 == ip).unwrap_or_default();
    let (ok, walked) = linear_walk(lin, pods[client].v4, ip, port);
    ensure!(ok, "the chosen flow is not allowed after reordering");
    Ok(Choice {
        server,
        client,
        port,
        walked,
        checked,
    })
}

fn load(topo: &Topology, script: &str) -> Result<Duration> {
    let t = Instant::now();
    topo.load_ruleset(NODE, &format!("flush ruleset\n{script}"))?;
    Ok(t.elapsed())
}

/// Lets the node's conntrack table drain the closing entries of the last
/// connection-rate run (they expire after 1 s here; the garbage collector
/// reaps them in the background): those slow the next run down, whatever
/// table is loaded. Returns the entry count it saw first.
fn settle(node_ns: &str, wait: Duration) -> Result<u64> {
    let n = netns::exec(
        node_ns,
        &["sysctl", "-n", "net.netfilter.nf_conntrack_count"],
        None,
    )?
    .trim()
    .parse()
    .unwrap_or(0);
    std::thread::sleep(wait);
    Ok(n)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[derive(Default)]
struct Samples {
    cps: Vec<f64>,
    rr: Vec<f64>,
    gbps: Vec<f64>,
    load_ms: Vec<f64>,
    failures: u64,
}

fn main() -> Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    // The smoke run uses the medium scale: the small one has too few pods on
    // one node for an allowed local pair.
    let scale = if bench {
        synth::SCALES[2]
    } else {
        synth::SCALES[1]
    };
    let rounds: usize = match std::env::var("NFTPOL_ROUNDS") {
        Ok(v) => v.parse().context("NFTPOL_ROUNDS")?,
        Err(_) if bench => 5,
        Err(_) => 1,
    };
    let (cps_time, stream_time, pause) = if bench {
        (
            Duration::from_millis(2500),
            Duration::from_millis(1000),
            Duration::from_millis(1500),
        )
    } else {
        (
            Duration::from_millis(300),
            Duration::from_millis(200),
            Duration::ZERO,
        )
    };

    let objs = synth::generate(scale, 42);
    let out = nftpol::core::compile::compile_objects(
        &objs,
        &Options {
            node: Some(NODE.into()),
            ..Default::default()
        },
    );
    ensure!(
        out.diagnostics.iter().all(|d| !d.is_error()),
        "synthetic cluster does not compile: {:?}",
        out.diagnostics.first()
    );
    let rs = out.ruleset;
    let rs_norev = nftpol::core::compile::compile_objects(
        &objs,
        &Options {
            node: Some(NODE.into()),
            revoke_established: false,
            ..Default::default()
        },
    )
    .ruleset;
    // The same cluster with ClusterNetworkPolicies, as many as at the scale
    // bench (500 at the large scale).
    let cnps = synth::cluster_policy_count(&scale);
    let mut objs_cnp = objs.clone();
    synth::add_cluster_policies(&mut objs_cnp, cnps, 7);
    let out_cnp = nftpol::core::compile::compile_objects(
        &objs_cnp,
        &Options {
            node: Some(NODE.into()),
            ..Default::default()
        },
    );
    ensure!(
        out_cnp.diagnostics.iter().all(|d| !d.is_error()),
        "synthetic cluster with CNPs does not compile: {:?}",
        out_cnp.diagnostics.iter().find(|d| d.is_error())
    );
    let rs_cnp = out_cnp.ruleset;
    let mut lin = Linear::from_ruleset(&rs);
    let pods = local_pods(&objs);
    let choice = choose(&rs, &rs_cnp, &mut lin, &pods)?;
    let (server, client) = (&pods[choice.server], &pods[choice.client]);
    let nft_b = nftpol::core::nft::render::script(&rs);
    let nft_b_norev = nftpol::core::nft::render::script(&rs_norev);
    let nft_c = lin.render();
    let nft_bc = nftpol::core::nft::render::script(&rs_cnp);
    let stats = rs.stats();
    let stats_cnp = rs_cnp.stats();
    println!(
        "scale {} ({} pods, {} policies), table for {NODE}: {} local pods",
        scale.name,
        scale.pods,
        scale.policies,
        pods.len()
    );
    println!(
        "  (b) nftpol: {} chains, {} rules, {} sets+maps, {} elements, {} bytes",
        stats.chains,
        stats.rules,
        stats.sets + stats.maps,
        stats.elements,
        nft_b.len()
    );
    println!(
        "  (b+cnp) nftpol with {cnps} ClusterNetworkPolicies: {} chains, {} rules, {} sets+maps, {} elements, {} bytes",
        stats_cnp.chains,
        stats_cnp.rules,
        stats_cnp.sets + stats_cnp.maps,
        stats_cnp.elements,
        nft_bc.len()
    );
    println!(
        "  (c) linear: {} dispatch rules ({} egress, {} ingress), {} rules in all, {} bytes",
        lin.egress.len() + lin.ingress.len(),
        lin.egress.len(),
        lin.ingress.len(),
        lin.rules(),
        nft_c.len()
    );
    println!(
        "  flow {} -> {}:{} (tcp); a SYN walks {} rules of (c); baseline agreed with nftpol's table on {} traced SYNs",
        client.v4, server.v4, choice.port, choice.walked, choice.checked
    );

    let spec = TopoSpec::new()
        .ports(&[80])
        .node(NODE, "10.101.0.0/16", "fd00:10:65::/48")
        .pod(
            "client",
            NODE,
            &client.v4.to_string(),
            &client.v6.to_string(),
        )
        .pod(
            "server",
            NODE,
            &server.v4.to_string(),
            &server.v6.to_string(),
        );
    let topo = Topology::build(Shape::Routed, &spec).context("building the topology")?;
    let node_ns = topo.node_netns(NODE).to_owned();
    // Connections end with an RST; conntrack keeps CLOSE entries 10 s by
    // default, which at these rates can fill the table between modes.
    let _ = netns::sysctl(
        &node_ns,
        &["net.netfilter.nf_conntrack_tcp_timeout_close=1".into()],
    );
    let _srv = connrate::LoadServer::start(topo.pod_netns("server"), &[choice.port, DENY_PORT], 4)?;
    let cns = topo.pod_netns("client").to_owned();
    let allowed = SocketAddr::new(server.v4.into(), choice.port);
    let denied = SocketAddr::new(server.v4.into(), DENY_PORT);

    // Whether the CNPs open the deny port (an Admin Accept may): then b+cnp
    // must let it through.
    let cnp_opens_deny = nftpol_allows(&rs_cnp, client.v4, server.v4, DENY_PORT);
    let modes: [(&str, &str, &str); 6] = [
        ("a", "no table", ""),
        ("a2", "conntrack only", CT_ONLY),
        ("b", "nftpol", &nft_b),
        ("b-norev", "nftpol, no revocation", &nft_b_norev),
        ("b+cnp", "nftpol + CNPs", &nft_bc),
        ("c", "linear baseline", &nft_c),
    ];
    // Enforcement check: every mode passes the allowed flow; b and c drop the other.
    for (m, what, script) in &modes {
        load(&topo, script)?;
        let ok = connrate::reachable(&cns, allowed, Duration::from_secs(2))?;
        let deny = connrate::reachable(&cns, denied, Duration::from_millis(700))?;
        let enforcing =
            m == &"b" || m == &"b-norev" || m == &"c" || (m == &"b+cnp" && !cnp_opens_deny);
        ensure!(ok, "({m}) {what}: the allowed flow {allowed} is blocked");
        ensure!(
            deny != enforcing,
            "({m}) {what}: flow to {denied} {}",
            if enforcing {
                "passes: the table does not enforce"
            } else {
                "is blocked without enforcement"
            }
        );
    }
    println!(
        "  enforcement check: allowed flow passes in a/a2/b/b+cnp/c; port {DENY_PORT} {}",
        if cnp_opens_deny {
            "dropped by b and c only (a ClusterNetworkPolicy Accept opens it in b+cnp, as the trace says)"
        } else {
            "dropped by b, b+cnp and c only"
        }
    );

    let mut samples: BTreeMap<&str, Samples> = BTreeMap::new();
    for round in 0..rounds {
        for k in 0..modes.len() {
            let (m, _, script) = modes[(k + round) % modes.len()];
            let s = samples.entry(m).or_default();
            s.load_ms.push(load(&topo, script)?.as_secs_f64() * 1e3);
            // The kernel frees the previous table asynchronously after a
            // swap: let that finish, then warm up (neighbours, conntrack).
            std::thread::sleep(Duration::from_millis(if bench { 1000 } else { 100 }));
            connrate::conn_rate(&cns, allowed, CLIENTS, cps_time / 8)?;
            settle(&node_ns, pause)?;
            // One-connection figures first: the connection-rate run leaves
            // thousands of closing conntrack entries behind.
            s.rr.push(connrate::rr_rate(&cns, allowed, stream_time)?);
            s.gbps
                .push(connrate::bulk_gbps(&cns, allowed, stream_time)?);
            let (cps, failed) = connrate::conn_rate(&cns, allowed, CLIENTS, cps_time)?;
            s.cps.push(cps);
            s.failures += failed;
            settle(&node_ns, pause)?;
        }
        if bench {
            let line: Vec<String> = modes
                .iter()
                .map(|(m, _, _)| format!("{m} {:.0}", samples[m].cps.last().unwrap_or(&0.0)))
                .collect();
            println!("  round {}: conn/s {}", round + 1, line.join(", "));
        }
    }
    load(&topo, "")?;

    let med = |m: &str, f: fn(&Samples) -> &Vec<f64>| median(f(&samples[m]));
    println!(
        "\nmedians of {rounds} rounds ({CLIENTS} client threads, {:.1} s per conn/s run)",
        cps_time.as_secs_f64()
    );
    println!(
        "{:<22} {:>10} {:>8} {:>8} {:>10} {:>8} {:>9} {:>8}",
        "mode", "conn/s", "vs a", "vs a2", "rr/s", "vs a", "Gbit/s", "load ms"
    );
    let (a_cps, a2_cps) = (med("a", |s| &s.cps), med("a2", |s| &s.cps));
    let a_rr = med("a", |s| &s.rr);
    for (m, what, _) in &modes {
        let cps = med(m, |s| &s.cps);
        let rr = med(m, |s| &s.rr);
        println!(
            "{:<22} {:>10.0} {:>8.3} {:>8.3} {:>10.0} {:>8.3} {:>9.2} {:>8.1}",
            format!("({m}) {what}"),
            cps,
            cps / a_cps,
            cps / a2_cps,
            rr,
            rr / a_rr,
            med(m, |s| &s.gbps),
            med(m, |s| &s.load_ms),
        );
    }
    // Ratios within each round (the modes ran back to back), then their
    // median: steadier than a ratio of medians when the machine's load drifts.
    let paired_by = |x: &str, y: &str, f: fn(&Samples) -> &Vec<f64>| {
        let r: Vec<f64> = f(&samples[x])
            .iter()
            .zip(f(&samples[y]))
            .map(|(a, b)| a / b)
            .collect();
        let spread = r
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        (median(&r), spread)
    };
    let paired = |x: &str, y: &str| paired_by(x, y, |s| &s.cps).0;
    for (what, f) in [
        ("new connections", (|s| &s.cps) as fn(&Samples) -> &Vec<f64>),
        ("rr on one established connection", |s| &s.rr),
        ("bulk on one established connection", |s| &s.gbps),
    ] {
        let (m, (lo, hi)) = paired_by("b", "b-norev", f);
        let (m0, (lo0, hi0)) = paired_by("b-norev", "a2", f);
        println!(
            "revocation, {what}: nftpol / nftpol without revocation = {m:.3} (rounds {lo:.3}..{hi:.3}); \
             for scale, nftpol without revocation / conntrack-only = {m0:.3} (rounds {lo0:.3}..{hi0:.3})"
        );
    }
    println!(
        "\nnew connections, median of per-round ratios: nftpol+CNPs / nftpol = {:.3}; nftpol+CNPs / conntrack-only = {:.3}",
        paired("b+cnp", "b"),
        paired("b+cnp", "a2"),
    );
    println!(
        "new connections, median of per-round ratios: nftpol / conntrack-only = {:.3} (target >= 0.95); \
         nftpol / linear = {:.2}x (target >= 2x); linear / conntrack-only = {:.3}; conntrack-only / no table = {:.3}",
        paired("b", "a2"),
        paired("b", "c"),
        paired("c", "a2"),
        paired("a2", "a"),
    );
    println!(
        "bulk: nftpol / no table = {:.3}; failed connections over all runs: {}",
        med("b", |s| &s.gbps) / med("a", |s| &s.gbps),
        samples.values().map(|s| s.failures).sum::<u64>()
    );
    for (m, _, _) in &modes {
        let v: Vec<String> = samples[m].cps.iter().map(|x| format!("{x:.0}")).collect();
        println!("  raw conn/s ({m}): {}", v.join(" "));
    }

    if let Ok(dir) = std::env::var("NFTPOL_PLOTS") {
        let path = std::path::Path::new(&dir).join("perf-packet-path.png");
        let bars: Vec<(String, f64)> = modes
            .iter()
            .map(|(m, what, _)| (format!("({m}) {what}"), med(m, |s| &s.cps)))
            .collect();
        plot::bars(
            &path,
            &format!(
                "New TCP connections/s, worst-placed pod, {} scale (median of {rounds})",
                scale.name
            ),
            "connections per second",
            &bars,
        )?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
