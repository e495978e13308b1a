//! A baseline ruleset shaped like the classic iptables-era enforcers, for the
//! packet-path benchmark: one dispatch rule per local pod, a chain per pod,
//! one rule per allowed peer and port, no sets.
//!
//! It is generated from nftpol's own compiled [`Ruleset`] (so both enforce
//! exactly the same policy): every pod in a `*-pods-v4` dispatch map gets a
//! chain holding, in policy order, one rule per element of the peer set ×
//! element of the port set of every rule of every policy chain its group
//! jumps to. IPv4 only: an iptables-era enforcer keeps IPv6 in ip6tables,
//! which IPv4 packets never walk.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

use nftpol::core::model::{Family, Protocol};
use nftpol::core::nft::ruleset::{Element, Match, Ruleset, Verdict};

/// Name of the baseline's table (`inet`).
pub const TABLE: &str = "linear";

/// One rule of a pod's chain: a peer address range and a protocol/port range,
/// either of which may be absent (any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearRule {
    /// Peer addresses `first..=last` (IPv4 as u32).
    pub peer: Option<(u32, u32)>,
    /// Protocol and destination ports `first..=last`.
    pub port: Option<(Protocol, u16, u16)>,
}

impl LinearRule {
    /// Whether a TCP/UDP/SCTP packet with this peer address and destination
    /// port matches.
    pub fn matches(&self, peer: Ipv4Addr, proto: Protocol, port: u16) -> bool {
        let p = u32::from(peer);
        self.peer.is_none_or(|(a, b)| a <= p && p <= b)
            && self
                .port
                .is_none_or(|(pr, a, b)| pr == proto && a <= port && port <= b)
    }

    fn render(&self, peer_dir: &str) -> String {
        let mut s = String::new();
        if let Some((a, b)) = self.peer {
            let (a, b) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            if a == b {
                let _ = write!(s, "ip {peer_dir} {a} ");
            } else {
                let _ = write!(s, "ip {peer_dir} {a}-{b} ");
            }
        }
        if let Some((proto, a, b)) = self.port {
            let p = proto.nft();
            if (a, b) == (0, u16::MAX) {
                let _ = write!(s, "meta l4proto {p} ");
            } else if a == b {
                let _ = write!(s, "{p} dport {a} ");
            } else {
                let _ = write!(s, "{p} dport {a}-{b} ");
            }
        }
        s
    }
}

/// One local pod's chain.
#[derive(Debug, Clone)]
pub struct PodChain {
    /// The pod's IPv4 address.
    pub ip: Ipv4Addr,
    /// Allow rules, in order; the chain drops what none of them allows.
    pub rules: Vec<LinearRule>,
}

/// The whole baseline: egress then ingress dispatch, in address order.
#[derive(Debug, Clone, Default)]
pub struct Linear {
    /// Local pods isolated for egress.
    pub egress: Vec<PodChain>,
    /// Local pods isolated for ingress.
    pub ingress: Vec<PodChain>,
}

fn set_elements<'a>(rs: &'a Ruleset, name: &str) -> impl Iterator<Item = &'a Element> {
    rs.sets
        .get(name)
        .unwrap_or_else(|| panic!("linear baseline: no set {name}"))
        .elements
        .iter()
}

fn v4(ip: &IpAddr) -> Option<u32> {
    match ip {
        IpAddr::V4(a) => Some(u32::from(*a)),
        IpAddr::V6(_) => None,
    }
}

/// Expands one policy-chain rule into linear rules for the pod `me`.
fn expand(rs: &Ruleset, me: Ipv4Addr, ingress: bool, matches: &[Match], out: &mut Vec<LinearRule>) {
    let mut peers: Vec<Option<(u32, u32)>> = vec![None];
    let mut ports: Vec<Option<(Protocol, u16, u16)>> = vec![None];
    for m in matches {
        match m {
            Match::AddrIn(Family::V4, _, set) => {
                peers = set_elements(rs, set)
                    .filter_map(|e| match e {
                        Element::Addr(a) => v4(a).map(|a| Some((a, a))),
                        Element::Range(r) => Some(Some((r.start as u32, r.end as u32))),
                        _ => None,
                    })
                    .collect();
            }
            Match::ProtoPortIn(set) => {
                ports = set_elements(rs, set)
                    .filter_map(|e| match e {
                        Element::ProtoPort(p, a, b) => Some(Some((*p, *a, *b))),
                        _ => None,
                    })
                    .collect();
            }
            // Ingress: the named ports of this pod. Egress: (peer address,
            // port) pairs, the peer selector already folded into the set.
            Match::DstProtoPortIn(Family::V4, set) => {
                let pairs: Vec<(u32, Protocol, u16)> = set_elements(rs, set)
                    .filter_map(|e| match e {
                        Element::AddrProtoPort(a, p, n) => v4(a).map(|a| (a, *p, *n)),
                        _ => None,
                    })
                    .collect();
                if ingress {
                    // Destination is this pod: keep its own entries.
                    ports = pairs
                        .iter()
                        .filter(|(a, _, _)| *a == u32::from(me))
                        .map(|(_, p, n)| Some((*p, *n, *n)))
                        .collect();
                } else {
                    for (a, p, n) in pairs {
                        out.push(LinearRule {
                            peer: Some((a, a)),
                            port: Some((p, n, n)),
                        });
                    }
                    return;
                }
            }
            // IPv6 rules never match an IPv4 packet.
            Match::AddrIn(Family::V6, _, _) | Match::DstProtoPortIn(Family::V6, _) => return,
            other => panic!("linear baseline: unexpected match {other:?} in a policy chain"),
        }
    }
    for peer in &peers {
        for port in &ports {
            out.push(LinearRule {
                peer: *peer,
                port: *port,
            });
        }
    }
}

/// The chain of the pod `me` dispatched to group chain `group`.
fn pod_chain(rs: &Ruleset, me: Ipv4Addr, ingress: bool, group: &str) -> PodChain {
    let chain = rs
        .chain(group)
        .unwrap_or_else(|| panic!("linear baseline: no chain {group}"));
    let mut rules = Vec::new();
    for r in &chain.rules {
        if let Verdict::Jump(policy) = &r.verdict {
            let pc = rs
                .chain(policy)
                .unwrap_or_else(|| panic!("linear baseline: no chain {policy}"));
            for pr in &pc.rules {
                expand(rs, me, ingress, &pr.matches, &mut rules);
            }
        }
    }
    PodChain { ip: me, rules }
}

impl Linear {
    /// The baseline for the pods dispatched by `rs` (one node's view).
    pub fn from_ruleset(rs: &Ruleset) -> Linear {
        let chains = |map: &str, ingress: bool| -> Vec<PodChain> {
            rs.maps[map]
                .elements
                .iter()
                .filter_map(|(ip, group)| match ip {
                    IpAddr::V4(a) => Some(pod_chain(rs, *a, ingress, group)),
                    IpAddr::V6(_) => None,
                })
                .collect()
        };
        Linear {
            egress: chains("egress-pods-v4", false),
            ingress: chains("ingress-pods-v4", true),
        }
    }

    /// Total rules of the rendered table.
    pub fn rules(&self) -> usize {
        2 + self.egress.len()
            + self.ingress.len()
            + 1
            + self
                .egress
                .iter()
                .chain(&self.ingress)
                .map(|c| c.rules.len() + 1)
                .sum::<usize>()
    }

    /// `nft -f` text creating (or replacing) table `inet linear`.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(1 << 20);
        let _ = writeln!(o, "table inet {TABLE}\ndelete table inet {TABLE}");
        let _ = writeln!(o, "table inet {TABLE} {{");
        for (i, c) in self.egress.iter().enumerate() {
            let _ = writeln!(o, "  chain eg-pod-{i} {{");
            for r in &c.rules {
                let _ = writeln!(o, "    {}goto in-dispatch", r.render("daddr"));
            }
            let _ = writeln!(o, "    counter drop\n  }}");
        }
        for (i, c) in self.ingress.iter().enumerate() {
            let _ = writeln!(o, "  chain in-pod-{i} {{");
            for r in &c.rules {
                let _ = writeln!(o, "    {}accept", r.render("saddr"));
            }
            let _ = writeln!(o, "    counter drop\n  }}");
        }
        let _ = writeln!(o, "  chain in-dispatch {{");
        for (i, c) in self.ingress.iter().enumerate() {
            let _ = writeln!(o, "    ip daddr {} jump in-pod-{i}", c.ip);
        }
        let _ = writeln!(o, "    accept\n  }}");
        let _ = writeln!(
            o,
            "  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    \
             ct state established,related accept"
        );
        for (i, c) in self.egress.iter().enumerate() {
            let _ = writeln!(o, "    ip saddr {} jump eg-pod-{i}", c.ip);
        }
        let _ = writeln!(o, "    goto in-dispatch\n  }}\n}}");
        o
    }
}
