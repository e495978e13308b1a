//! Revocation of established flows with real packets (docs/nftables.md, "Revoking established
//! flows"): in every shape and both families, a long-lived TCP connection, a UDP flow and an
//! SCTP association, same-node and cross-node, survive unrelated pod churn and a policy change
//! that still allows them, and are cut when a peer is relabelled or the allowing policy is
//! removed. Each node's table is kept by its own `Enforcer` (element deltas and full
//! replacements, advancing the generation), as the agent keeps it. A control run with
//! `--revoke-established=false` shows the same flows surviving the same removal.
//!
//! Needs root and network namespaces.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use nftpol::kernel::enforcer::{Applied, Enforcer};
use nftpol::kernel::nft::{ApplyError, Nft};
use nftpol_testkit as kit;

use kit::held::{EchoServer, HeldConn, HeldSctp, HeldUdp};
use kit::server::Server;
use kit::{Family, Shape, TopoSpec, Topology, netns};

const TCP: u16 = 7000;
const UDP: u16 = 7001;
const SCTP: u16 = 7002;
/// How long a cut flow is given to answer anyway.
const CUT_WAIT: Duration = Duration::from_secs(1);

/// `nft` run inside one node's namespace.
#[derive(Debug)]
struct NodeNft(String);

impl NodeNft {
    fn run(&self, argv: &[&str], stdin: Option<&str>) -> Result<String, ApplyError> {
        netns::exec(&self.0, argv, stdin).map_err(|e| ApplyError::Rejected {
            stderr: format!("{e:#}"),
        })
    }
}

impl Nft for NodeNft {
    fn apply(&self, script: &str) -> Result<(), ApplyError> {
        self.run(&["nft", "-f", "-"], Some(script)).map(|_| ())
    }
    fn check(&self, script: &str) -> Result<(), ApplyError> {
        self.run(&["nft", "-c", "-f", "-"], Some(script))
            .map(|_| ())
    }
    fn list_table(&self) -> Result<String, ApplyError> {
        self.run(&["nft", "-j", "list", "table", "inet", "nftpol"], None)
    }
    fn version(&self) -> Result<String, ApplyError> {
        self.run(&["nft", "--version"], None)
    }
}

/// The cluster's objects: clients `a` (node-1), servers `b` (node-1) and `c` (node-2), every
/// pod isolated for ingress; `allow` lets `role: client` reach `role: server` on the three
/// ports. `extra_ports` adds a port to `allow` (a structural change that still allows the
/// flows); `churn` adds a pod nobody talks to.
struct World {
    client_role: &'static str,
    allow: bool,
    extra_ports: bool,
    churn: bool,
}

impl World {
    fn yaml(&self, topo: &Topology) -> String {
        let mut s = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n");
        let mut pods: Vec<(String, &str, String, String, String)> = ["a", "b", "c"]
            .iter()
            .map(|p| {
                let role = if *p == "a" {
                    self.client_role
                } else {
                    "server"
                };
                (
                    p.to_string(),
                    role,
                    topo.pod_node(p).to_string(),
                    topo.pod_ip(p, Family::V4).to_string(),
                    topo.pod_ip(p, Family::V6).to_string(),
                )
            })
            .collect();
        if self.churn {
            let node = topo.pod_node("a").to_string();
            let v4 = topo.node_cidr(&node, Family::V4).nth(200).to_string();
            let v6 = topo.node_cidr(&node, Family::V6).nth(200).to_string();
            pods.push(("churn".into(), "batch", node, v4, v6));
        }
        for (pod, role, node, v4, v6) in pods {
            write!(
                s,
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: default, \
                 labels: {{role: {role}}}}}\nspec: {{nodeName: {node}, containers: [{{name: c, \
                 image: i}}]}}\nstatus: {{phase: Running, podIPs: [{{ip: \"{v4}\"}}, {{ip: \"{v6}\"}}]}}\n"
            )
            .unwrap();
        }
        s.push_str(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: deny, namespace: default}\nspec: {podSelector: {}}\n",
        );
        if self.allow {
            let extra = if self.extra_ports {
                ", {port: 9999}"
            } else {
                ""
            };
            write!(
                s,
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                 metadata: {{name: allow, namespace: default}}\n\
                 spec: {{podSelector: {{matchLabels: {{role: server}}}}, ingress: [{{from: \
                 [{{podSelector: {{matchLabels: {{role: client}}}}}}], ports: [{{port: {TCP}}}, \
                 {{port: {UDP}, protocol: UDP}}, {{port: {SCTP}, protocol: SCTP}}{extra}]}}]}}\n"
            )
            .unwrap();
        }
        s
    }
}

/// One node's enforcer per node, compiling with or without revocation.
struct Cluster<'t> {
    topo: &'t Topology,
    revoke: bool,
    enforcers: Vec<(String, Enforcer)>,
}

impl<'t> Cluster<'t> {
    fn new(topo: &'t Topology, revoke: bool) -> Cluster<'t> {
        let enforcers = topo
            .nodes()
            .into_iter()
            .map(|n| {
                (
                    n.to_string(),
                    Enforcer::with(NodeNft(topo.node_netns(n).to_string())),
                )
            })
            .collect();
        Cluster {
            topo,
            revoke,
            enforcers,
        }
    }

    /// Brings every node to `world`; returns what node-1's sync did.
    fn apply(&mut self, world: &World) -> Applied {
        let mut objs = nftpol::core::k8s::Objects::default();
        let mut diags = Vec::new();
        nftpol::core::k8s::parse_into(&world.yaml(self.topo), "test", &mut objs, &mut diags);
        assert!(diags.is_empty(), "test objects: {diags:?}");
        let mut first = None;
        for (node, e) in &mut self.enforcers {
            let out = nftpol::core::compile::compile_objects(
                &objs,
                &nftpol::core::compile::Options {
                    node: Some(node.clone()),
                    revoke_established: self.revoke,
                    ..Default::default()
                },
            );
            let applied = e
                .sync(&out.ruleset)
                .unwrap_or_else(|err| panic!("loading node {node}: {err}"));
            first.get_or_insert(applied);
        }
        first.expect("two nodes")
    }

    fn generation(&self) -> Option<u32> {
        self.enforcers[0].1.generation().map(|g| g.get())
    }
}

/// The held flows from `a`: TCP, UDP and SCTP to `b` (same node) and `c` (other node), both
/// families.
struct Flows {
    tcp: Vec<(String, HeldConn)>,
    udp: Vec<(String, HeldUdp)>,
    sctp: Vec<(String, HeldSctp)>,
}

impl Flows {
    fn open(topo: &Topology) -> Flows {
        let mut f = Flows {
            tcp: Vec::new(),
            udp: Vec::new(),
            sctp: Vec::new(),
        };
        for to in ["b", "c"] {
            for family in Family::ALL {
                let ip = topo.pod_ip(to, family);
                let label = |p: &str| format!("{p} a -> {to} {family}");
                let conn = HeldConn::open(
                    topo.pod_netns("a"),
                    SocketAddr::new(ip, TCP),
                    Duration::from_secs(2),
                )
                .unwrap_or_else(|e| panic!("{e:#}"))
                .unwrap_or_else(|e| panic!("{}: connect: {e}", label("tcp")));
                f.tcp.push((label("tcp"), conn));
                let udp = HeldUdp::open(topo.pod_netns("a"), SocketAddr::new(ip, UDP))
                    .unwrap_or_else(|e| panic!("{e:#}"));
                f.udp.push((label("udp"), udp));
                let sctp = HeldSctp::open(topo.pod_netns("a"), SocketAddr::new(ip, SCTP))
                    .unwrap_or_else(|e| panic!("{e:#}"));
                f.sctp.push((label("sctp"), sctp));
            }
        }
        f
    }

    /// Which flows still pass one exchange (label, passed).
    fn exchange(&mut self, wait: Duration) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for (l, c) in &mut self.tcp {
            let ok = c.echo(b"ping").is_ok();
            out.push((l.clone(), ok));
        }
        for (l, u) in &self.udp {
            out.push((l.clone(), u.echo(wait).is_ok()));
        }
        for (l, s) in &self.sctp {
            out.push((l.clone(), s.exchange(wait).is_ok()));
        }
        out
    }

    fn expect(&mut self, shape: Shape, step: &str, pass: bool) {
        let wait = if pass {
            Duration::from_secs(2)
        } else {
            CUT_WAIT
        };
        let wrong: Vec<String> = self
            .exchange(wait)
            .into_iter()
            .filter(|(_, ok)| *ok != pass)
            .map(|(l, _)| l)
            .collect();
        assert!(
            wrong.is_empty(),
            "{shape}, {step}: these flows {} but should {}: {wrong:?}",
            if pass { "were cut" } else { "still pass" },
            if pass { "pass" } else { "be cut" },
        );
    }
}

fn spec() -> TopoSpec {
    TopoSpec::two_nodes("node-1", "node-2")
        .pod_at("a", "node-1", 10)
        .pod_at("b", "node-1", 11)
        .pod_at("c", "node-2", 10)
}

fn servers(topo: &Topology) -> Vec<(EchoServer, Server)> {
    ["b", "c"]
        .iter()
        .map(|p| {
            (
                EchoServer::start(topo.pod_netns(p), TCP).unwrap_or_else(|e| panic!("{e:#}")),
                Server::start(topo.pod_netns(p), &[UDP, SCTP]).unwrap_or_else(|e| panic!("{e:#}")),
            )
        })
        .collect()
}

const BASE: World = World {
    client_role: "client",
    allow: true,
    extra_ports: false,
    churn: false,
};

#[test]
fn established_flows_are_cut_when_denied_and_survive_otherwise() {
    for shape in Shape::ALL {
        let topo = Topology::build(shape, &spec())
            .unwrap_or_else(|e| panic!("building {shape} topology: {e:#}"));
        let _servers = servers(&topo);
        let mut cluster = Cluster::new(&topo, true);
        assert_eq!(cluster.apply(&BASE), Applied::Full);
        let mut flows = Flows::open(&topo);
        flows.expect(shape, "allowed", true);

        let g = cluster.generation();
        let churn = World {
            churn: true,
            ..BASE
        };
        assert!(
            matches!(cluster.apply(&churn), Applied::Delta { .. }),
            "pod churn is an element delta"
        );
        assert_ne!(cluster.generation(), g, "a new generation");
        flows.expect(shape, "after unrelated pod churn", true);

        let wider = World {
            extra_ports: true,
            ..churn
        };
        assert_eq!(cluster.apply(&wider), Applied::Full, "a policy change");
        flows.expect(shape, "after a policy change that still allows them", true);

        let relabelled = World {
            client_role: "other",
            ..wider
        };
        assert!(
            matches!(cluster.apply(&relabelled), Applied::Delta { .. }),
            "a relabel is an element delta"
        );
        flows.expect(shape, "after the client was relabelled", false);

        // Allowed again: new flows, then the allowing policy goes.
        cluster.apply(&wider);
        let mut flows = Flows::open(&topo);
        flows.expect(shape, "new flows, allowed again", true);
        let removed = World {
            allow: false,
            ..wider
        };
        cluster.apply(&removed);
        flows.expect(shape, "after the allowing policy was removed", false);
    }
}

/// The control: without revocation the same removal leaves the flows running (so the test
/// above cut established flows, not flows conntrack had forgotten).
#[test]
fn without_revocation_established_flows_outlive_their_policy() {
    let shape = Shape::Routed;
    let topo =
        Topology::build(shape, &spec()).unwrap_or_else(|e| panic!("building {shape}: {e:#}"));
    let _servers = servers(&topo);
    let mut cluster = Cluster::new(&topo, false);
    cluster.apply(&BASE);
    let mut flows = Flows::open(&topo);
    flows.expect(shape, "allowed", true);
    cluster.apply(&World {
        allow: false,
        ..BASE
    });
    assert_eq!(
        cluster.generation(),
        None,
        "no generation without revocation"
    );
    flows.expect(shape, "policy removed, revocation off", true);
}
