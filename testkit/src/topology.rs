//! Cluster-like topologies built from network namespaces: nodes, pods, services, rulesets.
//!
//! Interfaces are always created directly inside the topology's own namespaces (a veth's peer is
//! created in its target namespace), so interface names can never collide between topologies and
//! nothing ever appears in the root namespace; only namespace names need the per-instance prefix.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

use super::netns;
use super::probe::{self, Job, Outcome, Proto};
use super::sctp::ChecksumMode;
use super::server::Server;

/// How pods are wired to their node and nodes to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// Calico/kindnet style: one veth per pod, /32 and /128 host routes, proxy ARP gateway
    /// 169.254.1.1 and fe80::1; nodes joined by a veth with routes to each other's pod CIDRs.
    Routed,
    /// Flannel host-gw / cni0 style: pod veths on a Linux bridge holding the gateway addresses,
    /// br_netfilter on; nodes joined by a veth with routes to each other's pod CIDRs.
    Bridge,
    /// Flannel VXLAN style: local pods bridged as in [`Shape::Bridge`]; other nodes' pod CIDRs
    /// routed through a vxlan device over an underlay veth.
    Vxlan,
}

impl Shape {
    /// All shapes.
    pub const ALL: [Shape; 3] = [Shape::Routed, Shape::Bridge, Shape::Vxlan];

    fn bridged(self) -> bool {
        matches!(self, Shape::Bridge | Shape::Vxlan)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Routed => "routed",
            Shape::Bridge => "bridge",
            Shape::Vxlan => "vxlan",
        })
    }
}

/// IP family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Both families.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    /// nft's name for the family's address match (`ip` / `ip6`).
    pub fn nft(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        })
    }
}

/// An address prefix such as `10.244.1.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// Network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl Cidr {
    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v4) => (u32::from(v4) as u128, 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }

    fn mask(&self) -> u128 {
        let (_, width) = Cidr::bits(self.addr);
        let full = if width == 32 {
            u32::MAX as u128
        } else {
            u128::MAX
        };
        if self.len == 0 {
            0
        } else {
            full & !((1u128 << (width - self.len)) - 1)
        }
    }

    /// Whether `ip` lies inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, w1) = Cidr::bits(self.addr);
        let (x, w2) = Cidr::bits(ip);
        w1 == w2 && (x & self.mask()) == net
    }

    /// The `n`-th address of the prefix (0 is the network address).
    pub fn nth(&self, n: u128) -> IpAddr {
        let (net, _) = Cidr::bits(self.addr);
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from((net + n) as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(net + n)),
        }
    }
}

impl FromStr for Cidr {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Cidr> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| anyhow!("{s:?}: missing /len"))?;
        let addr: IpAddr = a.parse().with_context(|| format!("{s:?}: bad address"))?;
        let len: u8 = l
            .parse()
            .with_context(|| format!("{s:?}: bad prefix length"))?;
        let (_, width) = Cidr::bits(addr);
        ensure!(len <= width, "{s:?}: prefix length over {width}");
        let c = Cidr { addr, len };
        let (bits, _) = Cidr::bits(addr);
        ensure!(bits & !c.mask() == 0, "{s:?}: host bits set");
        Ok(c)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A node: its name and pod CIDRs.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Node name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// IPv4 pod CIDR, e.g. 10.244.1.0/24.
    pub cidr4: Cidr,
    /// IPv6 pod CIDR, e.g. fd00:10:244:1::/64.
    pub cidr6: Cidr,
}

/// The pod CIDRs `(IPv4, IPv6)` of the two nodes of [`TopoSpec::two_nodes`], by node
/// position: `("node-1", ...)`-style names are the testdata's, tests may rename the nodes.
pub const TWO_NODES: [(&str, &str, &str); 2] = [
    ("node-1", "10.244.1.0/24", "fd00:10:244:1::/64"),
    ("node-2", "10.244.2.0/24", "fd00:10:244:2::/64"),
];

/// A pod: its name, node and addresses.
#[derive(Clone, Debug)]
pub struct PodSpec {
    /// Pod name, unique in the topology (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Name of the node it runs on.
    pub node: String,
    /// IPv4 address (inside the node's CIDR).
    pub ip4: Ipv4Addr,
    /// IPv6 address (inside the node's CIDR).
    pub ip6: Ipv6Addr,
    /// Ports its servers listen on; `None` uses [`TopoSpec::ports`].
    pub ports: Option<Vec<u16>>,
}

/// Nodes, pods and default server ports of a topology.
#[derive(Clone, Debug)]
pub struct TopoSpec {
    /// Nodes in order.
    pub nodes: Vec<NodeSpec>,
    /// Pods in order.
    pub pods: Vec<PodSpec>,
    /// Ports every pod serves (TCP, UDP and SCTP) unless it says otherwise.
    pub ports: Vec<u16>,
}

impl Default for TopoSpec {
    fn default() -> TopoSpec {
        TopoSpec::new()
    }
}

impl TopoSpec {
    /// An empty spec serving ports 80 and 81.
    pub fn new() -> TopoSpec {
        TopoSpec {
            nodes: Vec::new(),
            pods: Vec::new(),
            ports: vec![80, 81],
        }
    }

    /// Adds a node; panics on a malformed CIDR literal (test-code convenience).
    pub fn node(mut self, name: &str, cidr4: &str, cidr6: &str) -> TopoSpec {
        self.nodes.push(NodeSpec {
            name: name.to_owned(),
            cidr4: cidr4
                .parse()
                .unwrap_or_else(|e| panic!("node {name}: {e:#}")),
            cidr6: cidr6
                .parse()
                .unwrap_or_else(|e| panic!("node {name}: {e:#}")),
        });
        self
    }

    /// Adds a pod; panics on a malformed address literal.
    pub fn pod(mut self, name: &str, node: &str, ip4: &str, ip6: &str) -> TopoSpec {
        self.pods.push(PodSpec {
            name: name.to_owned(),
            node: node.to_owned(),
            ip4: ip4
                .parse()
                .unwrap_or_else(|e| panic!("pod {name}: {ip4:?}: {e}")),
            ip6: ip6
                .parse()
                .unwrap_or_else(|e| panic!("pod {name}: {ip6:?}: {e}")),
            ports: None,
        });
        self
    }

    /// The two-node cluster of `testdata/README.md`, under the given node names: the first node
    /// owns 10.244.1.0/24 and fd00:10:244:1::/64, the second 10.244.2.0/24 and
    /// fd00:10:244:2::/64. Every multi-node test starts from this one definition.
    pub fn two_nodes(first: &str, second: &str) -> TopoSpec {
        let [(_, a4, a6), (_, b4, b6)] = TWO_NODES;
        TopoSpec::new().node(first, a4, a6).node(second, b4, b6)
    }

    /// Adds a pod on `node` at host part `host` of the node's CIDRs, the testdata convention
    /// (`host` 12 on the first node of [`TopoSpec::two_nodes`]: 10.244.1.12 and
    /// fd00:10:244:1::12); panics if the node is unknown or the address is malformed.
    pub fn pod_at(self, name: &str, node: &str, host: u8) -> TopoSpec {
        let n = self
            .nodes
            .iter()
            .find(|n| n.name == node)
            .unwrap_or_else(|| panic!("pod {name}: unknown node {node}"));
        let ip4 = match n.cidr4.addr {
            IpAddr::V4(a) => {
                let o = a.octets();
                format!("{}.{}.{}.{host}", o[0], o[1], o[2])
            }
            IpAddr::V6(_) => panic!("node {node}: IPv4 CIDR expected"),
        };
        let ip6 = format!("{}{host}", n.cidr6.addr);
        self.pod(name, node, &ip4, &ip6)
    }

    /// Sets the default server ports.
    pub fn ports(mut self, ports: &[u16]) -> TopoSpec {
        self.ports = ports.to_vec();
        self
    }

    /// Overrides the server ports of one pod (e.g. to give a named port different numbers).
    pub fn pod_ports(mut self, pod: &str, ports: &[u16]) -> TopoSpec {
        let p = self
            .pods
            .iter_mut()
            .find(|p| p.name == pod)
            .unwrap_or_else(|| panic!("pod_ports: no pod {pod}"));
        p.ports = Some(ports.to_vec());
        self
    }

    /// `nodes` nodes `n1..` with CIDRs 10.244.i.0/24 and fd00:10:244:i::/64, each running
    /// `pods_per_node` pods `n<i>-p<j>` at 10.244.i.(10+j) and fd00:10:244:i::(10+j as hex).
    pub fn grid(nodes: usize, pods_per_node: usize) -> TopoSpec {
        assert!(
            (1..=200).contains(&nodes) && pods_per_node <= 200,
            "grid too large"
        );
        let mut spec = TopoSpec::new();
        for i in 1..=nodes {
            let node = format!("n{i}");
            spec = spec.node(
                &node,
                &format!("10.244.{i}.0/24"),
                &format!("fd00:10:244:{i:x}::/64"),
            );
            for j in 0..pods_per_node {
                spec = spec.pod(
                    &format!("{node}-p{j}"),
                    &node,
                    &format!("10.244.{i}.{}", 10 + j),
                    &format!("fd00:10:244:{i:x}::{:x}", 0x10 + j),
                );
            }
        }
        spec
    }

    fn validate(&self, shape: Shape) -> Result<()> {
        ensure!(!self.nodes.is_empty(), "topology needs at least one node");
        ensure!(self.nodes.len() <= 250, "at most 250 nodes");
        let ok_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        let mut seen = std::collections::HashSet::new();
        for n in &self.nodes {
            ensure!(ok_name(&n.name), "bad node name {:?}", n.name);
            ensure!(seen.insert(&n.name), "duplicate node {}", n.name);
            ensure!(
                n.cidr4.addr.is_ipv4() && n.cidr6.addr.is_ipv6(),
                "node {}: CIDR families",
                n.name
            );
            ensure!(
                n.cidr4.len <= 30 && n.cidr6.len <= 126,
                "node {}: CIDR too small",
                n.name
            );
        }
        let mut seen = std::collections::HashSet::new();
        let mut ips = std::collections::HashSet::new();
        for p in &self.pods {
            ensure!(ok_name(&p.name), "bad pod name {:?}", p.name);
            ensure!(seen.insert(&p.name), "duplicate pod {}", p.name);
            let node = self
                .nodes
                .iter()
                .find(|n| n.name == p.node)
                .ok_or_else(|| anyhow!("pod {}: unknown node {}", p.name, p.node))?;
            ensure!(
                node.cidr4.contains(p.ip4.into()) && node.cidr6.contains(p.ip6.into()),
                "pod {}: addresses {} / {} outside node {} CIDRs {} / {}",
                p.name,
                p.ip4,
                p.ip6,
                node.name,
                node.cidr4,
                node.cidr6
            );
            if shape.bridged() {
                ensure!(
                    IpAddr::V4(p.ip4) != node.cidr4.nth(0)
                        && IpAddr::V4(p.ip4) != node.cidr4.nth(1)
                        && IpAddr::V6(p.ip6) != node.cidr6.nth(0)
                        && IpAddr::V6(p.ip6) != node.cidr6.nth(1),
                    "pod {}: network and first address of the node CIDR are taken by the bridge",
                    p.name
                );
            }
            ensure!(
                ips.insert(IpAddr::V4(p.ip4)) && ips.insert(IpAddr::V6(p.ip6)),
                "pod {}: duplicate address",
                p.name
            );
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Node {
    name: String,
    netns: String,
    cidr4: Cidr,
    cidr6: Cidr,
    ip4: Ipv4Addr,
    ip6: Ipv6Addr,
}

#[derive(Debug)]
struct Pod {
    name: String,
    node: usize,
    netns: String,
    ip4: Ipv4Addr,
    ip6: Ipv6Addr,
    host_if: String,
    ports: Vec<u16>,
}

/// Where a probe starts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// From a pod's namespace.
    Pod(String),
    /// From a node's namespace (host traffic).
    Node(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Pod(p) => write!(f, "pod {p}"),
            Endpoint::Node(n) => write!(f, "node {n}"),
        }
    }
}

/// One probe of a batch: from an endpoint to an address and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProbeSpec {
    /// Source.
    pub from: Endpoint,
    /// Destination address (pod IP, ClusterIP, node IP, ...).
    pub to: IpAddr,
    /// Protocol.
    pub proto: Proto,
    /// Destination port.
    pub port: u16,
}

impl ProbeSpec {
    /// A probe from pod `from`.
    pub fn pod(from: &str, to: IpAddr, proto: Proto, port: u16) -> ProbeSpec {
        ProbeSpec {
            from: Endpoint::Pod(from.to_owned()),
            to,
            proto,
            port,
        }
    }

    /// A probe from node `from`'s namespace.
    pub fn node(from: &str, to: IpAddr, proto: Proto, port: u16) -> ProbeSpec {
        ProbeSpec {
            from: Endpoint::Node(from.to_owned()),
            to,
            proto,
            port,
        }
    }
}

impl fmt::Display for ProbeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {} {}/{}",
            self.from,
            SocketAddr::new(self.to, self.port),
            self.proto,
            self.port
        )
    }
}

/// A built topology. Dropping it stops every server and deletes every namespace it created,
/// also when the test panics.
pub struct Topology {
    shape: Shape,
    prefix: String,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    namespaces: Vec<String>,
    servers: Vec<Server>,
    timeout: Duration,
    build_time: Duration,
}

/// Underlay (node) addresses: 172.31.255.<i+1>/24 and fd00:ffff::<i+1>/64, private to the
/// topology's namespaces.
fn node_ips(i: usize) -> (Ipv4Addr, Ipv6Addr) {
    (
        Ipv4Addr::new(172, 31, 255, i as u8 + 1),
        Ipv6Addr::new(0xfd00, 0xffff, 0, 0, 0, 0, 0, i as u16 + 1),
    )
}

/// Link-local address of node `i`'s vxlan device, the IPv6 next hop towards its pods.
fn vtep6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0xff, i as u16 + 1)
}

/// Pod MTU under vxlan: the underlay's 1500 minus 50 bytes of encapsulation, as Flannel does.
const VXLAN_MTU: u32 = 1450;

impl Topology {
    /// Builds the topology, starts servers in every pod and checks that every pod reaches every
    /// other pod over UDP on both families (which also warms the neighbour caches).
    pub fn build(shape: Shape, spec: &TopoSpec) -> Result<Topology> {
        let start = Instant::now();
        spec.validate(shape)?;
        netns::cleanup_stale().context("removing stale test namespaces")?;
        let prefix = netns::instance_prefix();
        let nodes: Vec<Node> = spec
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let (ip4, ip6) = node_ips(i);
                Node {
                    name: n.name.clone(),
                    netns: format!("{prefix}-n-{}", n.name),
                    cidr4: n.cidr4,
                    cidr6: n.cidr6,
                    ip4,
                    ip6,
                }
            })
            .collect();
        let pods: Vec<Pod> = spec
            .pods
            .iter()
            .enumerate()
            .map(|(k, p)| Pod {
                name: p.name.clone(),
                node: spec
                    .nodes
                    .iter()
                    .position(|n| n.name == p.node)
                    .expect("validated"),
                netns: format!("{prefix}-p-{}", p.name),
                ip4: p.ip4,
                ip6: p.ip6,
                host_if: format!("vp{k}"),
                ports: p.ports.clone().unwrap_or_else(|| spec.ports.clone()),
            })
            .collect();
        let mut namespaces: Vec<String> = nodes.iter().map(|n| n.netns.clone()).collect();
        namespaces.extend(pods.iter().map(|p| p.netns.clone()));
        if nodes.len() > 2 {
            namespaces.push(format!("{prefix}-fabric"));
        }
        // From here on, Drop cleans up whatever part of the build succeeded.
        let mut topo = Topology {
            shape,
            prefix,
            nodes,
            pods,
            namespaces: namespaces.clone(),
            servers: Vec::new(),
            timeout: probe::DEFAULT_TIMEOUT,
            build_time: Duration::ZERO,
        };
        netns::add(&namespaces)?;
        topo.configure()
            .with_context(|| format!("building {shape} topology {}", topo.prefix))?;
        for p in &topo.pods {
            if !p.ports.is_empty() {
                let s =
                    Server::start(&p.netns, &p.ports).with_context(|| format!("pod {}", p.name))?;
                topo.servers.push(s);
            }
        }
        topo.self_check()
            .with_context(|| format!("{shape} topology {} self-check", topo.prefix))?;
        topo.build_time = start.elapsed();
        Ok(topo)
    }

    fn fabric(&self) -> Option<&str> {
        self.namespaces
            .iter()
            .find(|n| n.ends_with("-fabric"))
            .map(String::as_str)
    }

    fn configure(&self) -> Result<()> {
        let shape = self.shape;
        let mtu = if shape == Shape::Vxlan {
            format!(" mtu {VXLAN_MTU}")
        } else {
            String::new()
        };

        // Before any interface exists: new interfaces inherit "default", and a tentative
        // link-local address keeps a router from sending neighbour solicitations for a second.
        for n in &self.nodes {
            let mut s: Vec<String> = [
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ]
            .map(String::from)
            .to_vec();
            if shape.bridged() {
                s.push("net.bridge.bridge-nf-call-iptables=1".into());
                s.push("net.bridge.bridge-nf-call-ip6tables=1".into());
            }
            netns::sysctl(&n.netns, &s)?;
        }

        // Phase A: create links (veth peers land directly in their target namespace).
        for (i, n) in self.nodes.iter().enumerate() {
            let mut l: Vec<String> = vec![
                "link set lo up".into(),
                // Default routes into a veth pair that never leaves the namespace (this kernel
                // has no dummy driver): proxy ARP answers only for destinations routed out of
                // another interface, and unknown destinations die here instead of looping.
                "link add bh0 type veth peer name bh1".into(),
                "link set bh1 up".into(),
                "link set bh0 up".into(),
                "route add default dev bh0".into(),
                "route add ::/0 dev bh0".into(),
            ];
            if shape.bridged() {
                l.push("link add br0 type bridge".into());
                l.push("link set br0 up".into());
                l.push(format!(
                    "addr add {}/{} dev br0",
                    n.cidr4.nth(1),
                    n.cidr4.len
                ));
                l.push(format!(
                    "addr add {}/{} dev br0 nodad",
                    n.cidr6.nth(1),
                    n.cidr6.len
                ));
            }
            for p in self.pods.iter().filter(|p| p.node == i) {
                l.push(format!(
                    "link add {}{mtu} type veth peer name eth0{mtu} netns {}",
                    p.host_if, p.netns
                ));
                if shape.bridged() {
                    l.push(format!("link set {} master br0", p.host_if));
                    // As kubelet's hairpin mode: a pod reaching itself through a Service
                    // leaves and re-enters through the same bridge port.
                    l.push(format!(
                        "link set {} type bridge_slave hairpin on",
                        p.host_if
                    ));
                }
                l.push(format!("link set {} up", p.host_if));
            }
            if self.nodes.len() == 2 && i == 0 {
                l.push(format!(
                    "link add ul0 type veth peer name ul0 netns {}",
                    self.nodes[1].netns
                ));
            }
            netns::ip_batch(&n.netns, &l)?;
        }
        if let Some(fabric) = self.fabric() {
            let mut l: Vec<String> = vec![
                "link set lo up".into(),
                "link add br0 type bridge".into(),
                "link set br0 up".into(),
            ];
            for (i, n) in self.nodes.iter().enumerate() {
                l.push(format!(
                    "link add n{i} type veth peer name ul0 netns {}",
                    n.netns
                ));
                l.push(format!("link set n{i} master br0"));
                l.push(format!("link set n{i} up"));
            }
            netns::ip_batch(fabric, &l)?;
        }

        // Pods: addresses and default routes.
        for p in &self.pods {
            let n = &self.nodes[p.node];
            let mut l: Vec<String> = vec!["link set lo up".into(), "link set eth0 up".into()];
            match shape {
                Shape::Routed => {
                    l.push(format!("addr add {}/32 dev eth0", p.ip4));
                    l.push(format!("addr add {}/128 dev eth0 nodad", p.ip6));
                    l.push("route add 169.254.1.1 dev eth0 scope link".into());
                    l.push("route add default via 169.254.1.1 dev eth0".into());
                    l.push("route add ::/0 via fe80::1 dev eth0".into());
                }
                Shape::Bridge | Shape::Vxlan => {
                    l.push(format!("addr add {}/{} dev eth0", p.ip4, n.cidr4.len));
                    l.push(format!("addr add {}/{} dev eth0 nodad", p.ip6, n.cidr6.len));
                    l.push(format!("route add default via {}", n.cidr4.nth(1)));
                    l.push(format!("route add ::/0 via {}", n.cidr6.nth(1)));
                }
            }
            netns::ip_batch(&p.netns, &l)?;
        }

        // Phase B: node addresses, host routes, node-to-node routing.
        let mut fdb: Vec<(String, Vec<String>)> = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let mut l: Vec<String> = Vec::new();
            if self.nodes.len() == 1 {
                l.push(format!("addr add {}/32 dev lo", n.ip4));
                l.push(format!("addr add {}/128 dev lo nodad", n.ip6));
            } else {
                l.push("link set ul0 up".into());
                l.push(format!("addr add {}/24 dev ul0", n.ip4));
                l.push(format!("addr add {}/64 dev ul0 nodad", n.ip6));
            }
            if shape == Shape::Routed {
                for p in self.pods.iter().filter(|p| p.node == i) {
                    l.push(format!("addr add fe80::1/64 dev {} nodad", p.host_if));
                    l.push(format!("route add {}/32 dev {}", p.ip4, p.host_if));
                    l.push(format!("route add {}/128 dev {}", p.ip6, p.host_if));
                }
            }
            if shape == Shape::Vxlan && self.nodes.len() > 1 {
                l.push(format!(
                    "link add vx0 type vxlan id 1 local {} dev ul0 dstport 4789",
                    n.ip4
                ));
                l.push("link set vx0 up".into());
                // Flannel style: the VTEP holds the network address of the node's pod CIDR.
                l.push(format!("addr add {}/32 dev vx0", n.cidr4.nth(0)));
                l.push(format!("addr add {}/64 dev vx0 nodad", vtep6(i)));
                let mut f = Vec::new();
                for (j, peer) in self.nodes.iter().enumerate().filter(|(j, _)| *j != i) {
                    l.push(format!(
                        "route add {} via {} dev vx0 onlink",
                        peer.cidr4,
                        peer.cidr4.nth(0)
                    ));
                    l.push(format!("route add {} via {} dev vx0", peer.cidr6, vtep6(j)));
                    // Head-end replication of broadcast/multicast (ARP, ND) to every peer VTEP.
                    f.push(format!(
                        "fdb append 00:00:00:00:00:00 dev vx0 dst {}",
                        peer.ip4
                    ));
                }
                fdb.push((n.netns.clone(), f));
            } else {
                for peer in self.nodes.iter().filter(|p| p.name != n.name) {
                    l.push(format!("route add {} via {} dev ul0", peer.cidr4, peer.ip4));
                    l.push(format!("route add {} via {} dev ul0", peer.cidr6, peer.ip6));
                }
            }
            netns::ip_batch(&n.netns, &l)?;
        }
        for (ns, lines) in &fdb {
            netns::bridge_batch(ns, lines)?;
        }

        if shape == Shape::Routed {
            for (i, n) in self.nodes.iter().enumerate() {
                let s: Vec<String> = self
                    .pods
                    .iter()
                    .filter(|p| p.node == i)
                    .flat_map(|p| {
                        // Like Calico: proxy ARP answers to broadcast requests are otherwise
                        // delayed by a random part of proxy_delay (0.8 s).
                        [
                            format!("net.ipv4.conf.{}.proxy_arp=1", p.host_if),
                            format!("net.ipv4.neigh.{}.proxy_delay=0", p.host_if),
                        ]
                    })
                    .collect();
                netns::sysctl(&n.netns, &s)?;
            }
        }
        if shape.bridged() {
            for n in &self.nodes {
                for key in [
                    "net.bridge.bridge-nf-call-iptables",
                    "net.bridge.bridge-nf-call-ip6tables",
                ] {
                    let v = netns::exec(&n.netns, &["sysctl", "-n", key], None)?;
                    ensure!(
                        v.trim() == "1",
                        "{key} is {:?} in netns {}, not 1",
                        v.trim(),
                        n.netns
                    );
                }
            }
        }
        Ok(())
    }

    fn self_check(&self) -> Result<()> {
        let mut specs = Vec::new();
        for a in &self.pods {
            for b in self
                .pods
                .iter()
                .filter(|b| b.name != a.name && !b.ports.is_empty())
            {
                for ip in [IpAddr::V4(b.ip4), IpAddr::V6(b.ip6)] {
                    specs.push(ProbeSpec::pod(&a.name, ip, Proto::Udp, b.ports[0]));
                }
            }
        }
        // Generous: the first packets may wait for neighbour resolution.
        let outcomes = self.probe_outcomes_with(&specs, Duration::from_secs(3))?;
        let failed: Vec<String> = specs
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| !o.reached())
            .map(|(s, o)| format!("  {s}: {o}"))
            .collect();
        if !failed.is_empty() {
            bail!(
                "{} of {} pod-to-pod probes failed with no ruleset:\n{}",
                failed.len(),
                specs.len(),
                failed.join("\n")
            );
        }
        Ok(())
    }

    /// Shape it was built with.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The `nptb-<pid>-<n>` prefix of all its namespace names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Wall time [`Topology::build`] took, including the self-check.
    pub fn build_time(&self) -> Duration {
        self.build_time
    }

    /// Every namespace it created.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Node names in spec order.
    pub fn nodes(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    /// Pod names in spec order.
    pub fn pods(&self) -> Vec<&str> {
        self.pods.iter().map(|p| p.name.as_str()).collect()
    }

    fn node_ref(&self, node: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == node)
            .unwrap_or_else(|| panic!("no node {node:?} in topology {}", self.prefix))
    }

    fn pod_ref(&self, pod: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.name == pod)
            .unwrap_or_else(|| panic!("no pod {pod:?} in topology {}", self.prefix))
    }

    /// Namespace of a node (panics on an unknown name).
    pub fn node_netns(&self, node: &str) -> &str {
        &self.node_ref(node).netns
    }

    /// Namespace of a pod (panics on an unknown name).
    pub fn pod_netns(&self, pod: &str) -> &str {
        &self.pod_ref(pod).netns
    }

    /// Node a pod runs on.
    pub fn pod_node(&self, pod: &str) -> &str {
        &self.nodes[self.pod_ref(pod).node].name
    }

    /// A pod's address of the given family.
    pub fn pod_ip(&self, pod: &str, family: Family) -> IpAddr {
        let p = self.pod_ref(pod);
        match family {
            Family::V4 => IpAddr::V4(p.ip4),
            Family::V6 => IpAddr::V6(p.ip6),
        }
    }

    /// Ports a pod's servers listen on.
    pub fn pod_ports(&self, pod: &str) -> &[u16] {
        &self.pod_ref(pod).ports
    }

    /// Name of a pod's veth inside its node's namespace.
    pub fn host_if(&self, pod: &str) -> &str {
        &self.pod_ref(pod).host_if
    }

    /// A node's own (underlay) address of the given family.
    pub fn node_ip(&self, node: &str, family: Family) -> IpAddr {
        let n = self.node_ref(node);
        match family {
            Family::V4 => IpAddr::V4(n.ip4),
            Family::V6 => IpAddr::V6(n.ip6),
        }
    }

    /// A node's pod CIDR of the given family.
    pub fn node_cidr(&self, node: &str, family: Family) -> Cidr {
        let n = self.node_ref(node);
        match family {
            Family::V4 => n.cidr4,
            Family::V6 => n.cidr6,
        }
    }

    /// Runs `argv` inside namespace `netns` (any namespace name); returns stdout.
    pub fn exec(&self, netns: &str, argv: &[&str]) -> Result<String> {
        netns::exec(netns, argv, None)
    }

    /// Loads an nft script into a node's namespace with `nft -f -`; the error carries nft's
    /// stderr.
    pub fn load_ruleset(&self, node: &str, nft_text: &str) -> Result<()> {
        let ns = self.node_netns(node);
        netns::exec(ns, &["nft", "-f", "-"], Some(nft_text))
            .with_context(|| format!("loading ruleset into node {node}"))?;
        Ok(())
    }

    /// Loads the same nft script into every node.
    pub fn load_ruleset_all(&self, nft_text: &str) -> Result<()> {
        for n in &self.nodes {
            self.load_ruleset(&n.name, nft_text)?;
        }
        Ok(())
    }

    /// `nft list ruleset` of a node, for failure messages.
    pub fn list_ruleset(&self, node: &str) -> Result<String> {
        netns::exec(self.node_netns(node), &["nft", "list", "ruleset"], None)
    }

    /// Packet count of named counter `name` in `table` (e.g. `"inet nftpol"`) on a node.
    pub fn nft_counter(&self, node: &str, table: &str, name: &str) -> Result<u64> {
        let mut argv = vec!["nft", "list", "counter"];
        argv.extend(table.split_whitespace());
        argv.push(name);
        let out = netns::exec(self.node_netns(node), &argv, None)?;
        let packets = out
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .ok_or_else(|| anyhow!("no packet count in:\n{out}"))?;
        packets
            .parse()
            .with_context(|| format!("parsing counter output:\n{out}"))
    }

    /// Installs a kube-proxy-style DNAT `cluster_ip:port/proto -> backend_ip:backend_port` in a
    /// node, in its own table (`ip kubeproxy-test` or `ip6 kubeproxy-test`), for pod traffic
    /// (prerouting, priority dstnat) and the node's own traffic (output). Pods need no extra
    /// route: their default route already points at the node. Like kube-proxy, the backend
    /// reaching itself through the Service (hairpin) is masqueraded (postrouting, after the
    /// filter hooks, which still see pod to pod).
    pub fn add_service(
        &self,
        node: &str,
        cluster_ip: IpAddr,
        port: u16,
        proto: Proto,
        backend_ip: IpAddr,
        backend_port: u16,
    ) -> Result<()> {
        let fam = Family::of(cluster_ip);
        ensure!(
            fam == Family::of(backend_ip),
            "service {cluster_ip} and backend {backend_ip} differ in family"
        );
        let f = fam.nft();
        let backend = SocketAddr::new(backend_ip, backend_port);
        let text = format!(
            "table {f} kubeproxy-test {{\n\
             \tchain prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
             \tchain output {{ type nat hook output priority -100; policy accept; }}\n\
             \tchain postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
             }}\n\
             add rule {f} kubeproxy-test prerouting {f} daddr {cluster_ip} {proto} dport {port} dnat to {backend}\n\
             add rule {f} kubeproxy-test output {f} daddr {cluster_ip} {proto} dport {port} dnat to {backend}\n\
             add rule {f} kubeproxy-test postrouting {f} saddr {backend_ip} {f} daddr {backend_ip} \
             {proto} dport {backend_port} ct status dnat ct original {f} daddr {cluster_ip} masquerade\n"
        );
        self.load_ruleset(node, &text)
            .with_context(|| format!("adding service {cluster_ip}:{port}/{proto} -> {backend}"))
    }

    /// [`Topology::add_service`] on every node, as kube-proxy would.
    pub fn add_service_everywhere(
        &self,
        cluster_ip: IpAddr,
        port: u16,
        proto: Proto,
        backend_ip: IpAddr,
        backend_port: u16,
    ) -> Result<()> {
        for n in &self.nodes {
            self.add_service(&n.name, cluster_ip, port, proto, backend_ip, backend_port)?;
        }
        Ok(())
    }

    /// Forgets all neighbour (ARP/ND) entries in every pod and node, so the next packets must
    /// resolve neighbours again through whatever ruleset is loaded.
    pub fn flush_neighbours(&self) -> Result<()> {
        for ns in self
            .nodes
            .iter()
            .map(|n| &n.netns)
            .chain(self.pods.iter().map(|p| &p.netns))
        {
            netns::run("ip", &["-n", ns, "neigh", "flush", "all"], None)?;
        }
        Ok(())
    }

    /// Starts responders in a node's namespace on `ports` (all its global addresses).
    pub fn serve_node(&mut self, node: &str, ports: &[u16]) -> Result<()> {
        let ns = self.node_netns(node).to_owned();
        let s = Server::start(&ns, ports)?;
        self.servers.push(s);
        Ok(())
    }

    /// Current probe timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets the probe timeout (default one second).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn source_netns(&self, from: &Endpoint) -> &str {
        match from {
            Endpoint::Pod(p) => self.pod_netns(p),
            Endpoint::Node(n) => self.node_netns(n),
        }
    }

    /// Probes from a pod; panics if the harness (not the network) fails.
    pub fn probe(&self, from_pod: &str, to: IpAddr, proto: Proto, port: u16) -> bool {
        self.probe_many(&[ProbeSpec::pod(from_pod, to, proto, port)])[0]
    }

    /// Probes from a node's namespace; panics if the harness fails.
    pub fn probe_from_node(&self, node: &str, to: IpAddr, proto: Proto, port: u16) -> bool {
        self.probe_many(&[ProbeSpec::node(node, to, proto, port)])[0]
    }

    /// Runs all probes concurrently; `true` where the destination answered. Panics if the
    /// harness fails, so a broken test bed never reads as "blocked".
    pub fn probe_many(&self, specs: &[ProbeSpec]) -> Vec<bool> {
        self.probe_outcomes(specs)
            .iter()
            .map(Outcome::reached)
            .collect()
    }

    /// Like [`Topology::probe_many`] but says how each probe ended (timeout vs refused, ...).
    pub fn probe_outcomes(&self, specs: &[ProbeSpec]) -> Vec<Outcome> {
        self.probe_outcomes_with(specs, self.timeout)
            .unwrap_or_else(|e| panic!("probe harness failed: {e:#}"))
    }

    fn probe_outcomes_with(&self, specs: &[ProbeSpec], timeout: Duration) -> Result<Vec<Outcome>> {
        let jobs: Vec<Job> = specs
            .iter()
            .map(|s| Job {
                netns: self.source_netns(&s.from).to_owned(),
                to: SocketAddr::new(s.to, s.port),
                proto: s.proto,
            })
            .collect();
        probe::run_many(&jobs, timeout)
    }

    /// An SCTP INIT probe whose checksum is filled per `checksum`, to test receivers' checks.
    pub fn probe_sctp_checksum(
        &self,
        from: &Endpoint,
        to: IpAddr,
        port: u16,
        checksum: ChecksumMode,
    ) -> Outcome {
        probe::probe_in(
            self.source_netns(from),
            SocketAddr::new(to, port),
            Proto::Sctp,
            self.timeout,
            checksum,
        )
        .unwrap_or_else(|e| panic!("probe harness failed: {e:#}"))
    }

    /// Runs `cases` (probe, expected reachability) and returns a report of every mismatch,
    /// or `Ok` with a one-line summary when all match.
    pub fn check(&self, label: &str, cases: &[(ProbeSpec, bool)]) -> Result<CheckSummary, String> {
        let start = Instant::now();
        let specs: Vec<ProbeSpec> = cases.iter().map(|(s, _)| s.clone()).collect();
        let outcomes = self.probe_outcomes(&specs);
        let elapsed = start.elapsed();
        let mismatches: Vec<String> = cases
            .iter()
            .zip(&outcomes)
            .filter(|((_, want), got)| got.reached() != *want)
            .map(|((s, want), got)| {
                format!(
                    "  {s}: expected {}, got {got}",
                    if *want { "reached" } else { "blocked" }
                )
            })
            .collect();
        let summary = CheckSummary {
            label: label.to_owned(),
            probes: cases.len(),
            reached: outcomes.iter().filter(|o| o.reached()).count(),
            elapsed,
        };
        if mismatches.is_empty() {
            Ok(summary)
        } else {
            Err(format!(
                "[{} {}] {} of {} probes differ from expectation:\n{}",
                self.shape,
                label,
                mismatches.len(),
                cases.len(),
                mismatches.join("\n")
            ))
        }
    }
}

/// Result of a successful [`Topology::check`].
#[derive(Clone, Debug)]
pub struct CheckSummary {
    /// The label passed to `check`.
    pub label: String,
    /// Probes run.
    pub probes: usize,
    /// Probes that reached their destination (all as expected).
    pub reached: usize,
    /// Wall time of the batch.
    pub elapsed: Duration,
}

impl fmt::Display for CheckSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} probes as expected ({} reached, {} blocked) in {} ms",
            self.label,
            self.probes,
            self.reached,
            self.probes - self.reached,
            self.elapsed.as_millis()
        )
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Servers first: their threads and sockets pin the namespaces.
        for s in &self.servers {
            s.signal_stop();
        }
        for s in self.servers.drain(..) {
            s.join();
        }
        if let Err(e) = netns::delete(&self.namespaces) {
            eprintln!("topology {}: teardown failed: {e:#}", self.prefix);
        }
        if let Ok(left) = netns::list() {
            let left: Vec<&String> = left
                .iter()
                .filter(|n| self.namespaces.contains(n))
                .collect();
            if !left.is_empty() {
                eprintln!("topology {}: namespaces left behind: {left:?}", self.prefix);
            }
        }
    }
}
