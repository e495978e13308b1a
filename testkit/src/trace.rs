//! A packet tracer over the typed ruleset: evaluates one packet the way the
//! kernel would, for exactly the rule shapes nftpol emits (`nftpol::core::nft::ruleset`).
//! Used by the tests and benches that cross-check the compiled table without a
//! kernel: `tests/explain.rs`, the differential test in `tests/oracle/` and
//! `benches/packet_path/`.

use std::net::IpAddr;

use nftpol::core::model::{Family, Protocol};
use nftpol::core::nft::ruleset::{Addr, Element, Match, Ruleset, SetKind, Verdict};

/// Transport protocol of a traced packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// A port-carrying protocol with its destination port.
    Port(Protocol, u16),
    /// ICMPv6 with its type (135/136 are neighbour solicitation/advertisement).
    Icmpv6(u8),
    /// Anything else (ICMP, ...), given by protocol number.
    Other(u8),
}

/// The packet to trace, seen at the forward hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (after DNAT).
    pub dst: IpAddr,
    /// Transport.
    pub l4: L4,
    /// Whether conntrack sees it as part of an established/related flow.
    pub established: bool,
}

/// Final verdict of the forward hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded.
    Accept,
    /// Dropped.
    Drop,
}

/// The verdict plus the rules that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Verdict.
    pub outcome: Outcome,
    /// `(chain, rule index)` of every rule whose matches all held, in order.
    pub path: Vec<(String, usize)>,
}

impl Trace {
    /// The prefixes of the log rules the packet passed, in order (a log
    /// rule on the path always matched; whether the kernel's `limit` let
    /// the packet through to the group is not modelled).
    pub fn logs(&self, rs: &Ruleset) -> Vec<String> {
        self.path
            .iter()
            .filter_map(|(c, i)| match &rs.chain(c)?.rules.get(*i)?.verdict {
                Verdict::Log(l) => Some(l.prefix.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Why a trace could not be completed (the ruleset is malformed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// A jump/goto/vmap names a chain that does not exist.
    #[error("unknown chain {0}")]
    UnknownChain(String),
    /// A rule names a set or map that does not exist, or of the wrong type.
    #[error("unknown or mistyped set {0}")]
    UnknownSet(String),
    /// More nested jumps than the kernel allows.
    #[error("jump stack overflow at {0}")]
    StackOverflow(String),
    /// No base chain.
    #[error("no base chain")]
    NoBaseChain,
}

/// Traces a forwarded packet through the ruleset's `forward` base chain.
pub fn trace(rs: &Ruleset, pkt: &Packet) -> Result<Trace, TraceError> {
    trace_hook(rs, pkt, "forward")
}

/// Traces a packet to this host (a pod reaching the node it runs on)
/// through the `input` base chain; a ruleset without one accepts it.
pub fn trace_input(rs: &Ruleset, pkt: &Packet) -> Result<Trace, TraceError> {
    if !rs
        .chains
        .iter()
        .any(|(_, c)| c.hook.is_some_and(|h| h.hook == "input"))
    {
        return Ok(Trace {
            outcome: Outcome::Accept,
            path: Vec::new(),
        });
    }
    trace_hook(rs, pkt, "input")
}

/// Traces a packet through the base chain of `hook` (`fib daddr type local`
/// holds exactly in `input`).
fn trace_hook(rs: &Ruleset, pkt: &Packet, hook: &str) -> Result<Trace, TraceError> {
    let local = hook == "input";
    let (base, _) = rs
        .chains
        .iter()
        .find(|(_, c)| c.hook.is_some_and(|h| h.hook == hook))
        .ok_or(TraceError::NoBaseChain)?;
    let mut path = Vec::new();
    // Call stack of (chain, next rule index).
    let mut stack: Vec<(String, usize)> = vec![(base.clone(), 0)];
    while let Some((chain_name, idx)) = stack.pop() {
        let chain = rs
            .chain(&chain_name)
            .ok_or_else(|| TraceError::UnknownChain(chain_name.clone()))?;
        let Some(rule) = chain.rules.get(idx) else {
            if stack.is_empty() {
                // End of the base chain: its policy (accept).
                return Ok(Trace {
                    outcome: Outcome::Accept,
                    path,
                });
            }
            continue; // implicit return to the caller
        };
        let mut all = true;
        for m in &rule.matches {
            if !eval_match(rs, m, pkt, local)? {
                all = false;
                break;
            }
        }
        if !all {
            stack.push((chain_name, idx + 1));
            continue;
        }
        let target = match &rule.verdict {
            Verdict::Accept => {
                path.push((chain_name, idx));
                return Ok(Trace {
                    outcome: Outcome::Accept,
                    path,
                });
            }
            Verdict::CountedDrop => {
                path.push((chain_name, idx));
                return Ok(Trace {
                    outcome: Outcome::Drop,
                    path,
                });
            }
            // Logging changes nothing: record it and go on with the next rule.
            Verdict::Log(_) => {
                path.push((chain_name.clone(), idx));
                stack.push((chain_name, idx + 1));
                continue;
            }
            // Back to the rule after the caller's jump; from the base
            // chain, its policy (accept).
            Verdict::Return => {
                path.push((chain_name, idx));
                if stack.is_empty() {
                    return Ok(Trace {
                        outcome: Outcome::Accept,
                        path,
                    });
                }
                continue;
            }
            Verdict::Jump(c) => Some((c.clone(), true)),
            Verdict::Goto(c) => Some((c.clone(), false)),
            Verdict::AddrVmap(f, a, map) => {
                let m = rs
                    .maps
                    .get(map)
                    .filter(|m| m.family == *f)
                    .ok_or_else(|| TraceError::UnknownSet(map.clone()))?;
                let ip = pick(pkt, *a);
                if Family::of(&ip) != *f {
                    None
                } else {
                    m.elements.get(&ip).map(|c| (c.clone(), true))
                }
            }
        };
        match target {
            None => stack.push((chain_name, idx + 1)),
            Some((next, is_jump)) => {
                path.push((chain_name.clone(), idx));
                if is_jump {
                    stack.push((chain_name, idx + 1));
                }
                if stack.len() >= 16 {
                    return Err(TraceError::StackOverflow(next));
                }
                if rs.chain(&next).is_none() {
                    return Err(TraceError::UnknownChain(next));
                }
                stack.push((next, 0));
            }
        }
    }
    unreachable!("the base chain frame always returns")
}

fn pick(pkt: &Packet, a: Addr) -> IpAddr {
    match a {
        Addr::Src => pkt.src,
        Addr::Dst => pkt.dst,
    }
}

fn set_of<'a>(
    rs: &'a Ruleset,
    name: &str,
    kind: SetKind,
) -> Result<&'a std::collections::BTreeSet<Element>, TraceError> {
    rs.sets
        .get(name)
        .filter(|s| s.kind == kind)
        .map(|s| &s.elements)
        .ok_or_else(|| TraceError::UnknownSet(name.to_string()))
}

fn eval_match(rs: &Ruleset, m: &Match, pkt: &Packet, local: bool) -> Result<bool, TraceError> {
    let fam = Family::of(&pkt.src);
    Ok(match m {
        Match::CtEstablishedRelated => pkt.established,
        Match::NeighbourDiscovery => fam == Family::V6 && matches!(pkt.l4, L4::Icmpv6(133..=137)),
        Match::SelfPair(f, set) => {
            let els = set_of(rs, set, SetKind::AddrPair(*f))?;
            fam == *f && els.contains(&Element::AddrPair(pkt.src, pkt.dst))
        }
        Match::AddrNotIn(f, a, set) => {
            // `ip saddr != @set` only matches packets of that family.
            fam == *f && !eval_match(rs, &Match::AddrIn(*f, *a, set.clone()), pkt, local)?
        }
        Match::AddrIn(f, a, set) => {
            let ip = pick(pkt, *a);
            match rs.sets.get(set).map(|s| s.kind) {
                Some(SetKind::Addr(sf)) if sf == *f => {
                    fam == *f && set_of(rs, set, SetKind::Addr(*f))?.contains(&Element::Addr(ip))
                }
                Some(SetKind::AddrInterval(sf)) if sf == *f => {
                    fam == *f
                        && set_of(rs, set, SetKind::AddrInterval(*f))?
                            .iter()
                            .any(|e| matches!(e, Element::Range(r) if r.contains(&ip)))
                }
                _ => return Err(TraceError::UnknownSet(set.clone())),
            }
        }
        Match::ProtoPortIn(set) => {
            let els = set_of(rs, set, SetKind::ProtoPort)?;
            match pkt.l4 {
                L4::Port(p, port) => els.iter().any(|e| {
                    matches!(e, Element::ProtoPort(ep, a, b) if *ep == p && (*a..=*b).contains(&port))
                }),
                _ => false,
            }
        }
        Match::DstProtoPortIn(f, set) => {
            let els = set_of(rs, set, SetKind::AddrProtoPort(*f))?;
            match pkt.l4 {
                L4::Port(p, port) if fam == *f => {
                    els.contains(&Element::AddrProtoPort(pkt.dst, p, port))
                }
                _ => false,
            }
        }
        Match::FibDaddrLocal => local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftpol::core::nft::ruleset::{Chain, Hook, Log, Rule};

    fn log_rule() -> Rule {
        Rule {
            matches: vec![],
            verdict: Verdict::Log(Log {
                group: 1,
                rate: 1,
                burst: 1,
                prefix: "nftpol drop g".into(),
            }),
            comment: None,
        }
    }

    /// A base chain `[log, then]`: the log rule is on the path, `then` decides.
    fn ruleset(then: Verdict) -> Ruleset {
        let mut rs = Ruleset::default();
        rs.chains.push((
            "base".into(),
            Chain {
                hook: Some(Hook {
                    hook: "forward",
                    priority: 0,
                }),
                comment: String::new(),
                rules: vec![
                    log_rule(),
                    Rule {
                        matches: vec![],
                        verdict: then,
                        comment: None,
                    },
                ],
            },
        ));
        rs
    }

    #[test]
    fn logging_never_changes_the_verdict() {
        let pkt = Packet {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            l4: L4::Port(Protocol::Tcp, 80),
            established: false,
        };
        for (then, want) in [
            (Verdict::CountedDrop, Outcome::Drop),
            (Verdict::Accept, Outcome::Accept),
        ] {
            let t = trace(&ruleset(then), &pkt).unwrap();
            assert_eq!(t.outcome, want);
            assert_eq!(t.path, vec![("base".into(), 0), ("base".into(), 1)]);
        }
    }
}
