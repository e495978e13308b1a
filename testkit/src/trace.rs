//! A packet tracer over the typed ruleset: evaluates one packet the way the
//! kernel would, for exactly the rule shapes nftpol emits (`nftpol::core::nft::ruleset`).
//! Used by the tests and benches that cross-check the compiled table without a
//! kernel: `tests/explain.rs`, the differential test in `tests/oracle/` and
//! `benches/packet_path/`.

use std::net::IpAddr;

use nftpol::core::model::{Family, Protocol};
use nftpol::core::nft::ruleset::{Addr, Element, Generation, Match, Ruleset, SetKind, Verdict};

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

/// Conntrack state of a traced packet's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtState {
    /// The first packet of a connection.
    New,
    /// A later packet.
    Established,
    /// An ICMP error (or helper flow) of a tracked connection.
    Related,
}

/// The connection a packet belongs to, as the tracer models conntrack: its
/// state and direction for this packet, and its `ct mark`, which the
/// revocation rules read and write (docs/nftables.md, "Revoking established
/// flows"). Keep one per flow across packets and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    /// State for this packet.
    pub state: CtState,
    /// Whether this packet goes in the reply direction.
    pub reply: bool,
    /// The connection's mark.
    pub mark: u32,
}

impl Conn {
    /// A new connection (no mark yet).
    pub fn new() -> Conn {
        Conn {
            state: CtState::New,
            reply: false,
            mark: 0,
        }
    }

    /// The same connection, for an established packet in the original
    /// (`reply` false) or reply direction.
    pub fn established(self, reply: bool) -> Conn {
        Conn {
            state: CtState::Established,
            reply,
            ..self
        }
    }
}

impl Default for Conn {
    fn default() -> Self {
        Conn::new()
    }
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

/// Traces a packet of connection `conn` through every `forward` base chain
/// of the table in priority order, updating `conn.mark` as the kernel would. The path is every
/// chain's; the outcome is the hook's (dropped if any chain drops).
pub fn trace_conn(rs: &Ruleset, pkt: &Packet, conn: &mut Conn) -> Result<Trace, TraceError> {
    let mut bases: Vec<(&String, i32)> = rs
        .chains
        .iter()
        .filter_map(|(n, c)| {
            c.hook
                .filter(|h| h.hook == "forward")
                .map(|h| (n, h.priority))
        })
        .collect();
    if bases.is_empty() {
        return Err(TraceError::NoBaseChain);
    }
    bases.sort_by_key(|(_, p)| *p);
    let mut path = Vec::new();
    for (base, _) in bases {
        let t = trace_chain(rs, pkt, base, false, conn)?;
        path.extend(t.path);
        if t.outcome == Outcome::Drop {
            return Ok(Trace {
                outcome: Outcome::Drop,
                path,
            });
        }
    }
    Ok(Trace {
        outcome: Outcome::Accept,
        path,
    })
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
    let (base, _) = rs
        .chains
        .iter()
        .filter(|(_, c)| c.hook.is_some_and(|h| h.hook == hook))
        .min_by_key(|(_, c)| c.hook.map(|h| h.priority))
        .ok_or(TraceError::NoBaseChain)?;
    let mut conn = Conn {
        state: if pkt.established {
            CtState::Established
        } else {
            CtState::New
        },
        ..Conn::new()
    };
    trace_chain(rs, pkt, base, hook == "input", &mut conn)
}

/// Traces a packet from base chain `base` to its verdict.
fn trace_chain(
    rs: &Ruleset,
    pkt: &Packet,
    base: &str,
    local: bool,
    conn: &mut Conn,
) -> Result<Trace, TraceError> {
    let mut path = Vec::new();
    // Call stack of (chain, next rule index).
    let mut stack: Vec<(String, usize)> = vec![(base.to_string(), 0)];
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
            if !eval_match(rs, m, pkt, local, conn)? {
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
            // Mark statements change the connection, then the next rule runs.
            Verdict::CtRevoke | Verdict::CtClearStamp | Verdict::CtStamp => {
                let g = generation(rs)?;
                conn.mark = match rule.verdict {
                    Verdict::CtRevoke => conn.mark | Generation::MASK,
                    Verdict::CtClearStamp => conn.mark & !Generation::MASK,
                    // The map holds one key, 0 (no other mark bits in use).
                    _ if conn.mark & !Generation::MASK == 0 => g.stamp(),
                    _ => conn.mark,
                };
                path.push((chain_name.clone(), idx));
                stack.push((chain_name, idx + 1));
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

fn generation(rs: &Ruleset) -> Result<Generation, TraceError> {
    rs.generation
        .ok_or_else(|| TraceError::UnknownSet("ct-generation".into()))
}

fn eval_match(
    rs: &Ruleset,
    m: &Match,
    pkt: &Packet,
    local: bool,
    conn: &Conn,
) -> Result<bool, TraceError> {
    let fam = Family::of(&pkt.src);
    Ok(match m {
        Match::CtEstablishedRelated => conn.state != CtState::New,
        Match::CtEstablishedCurrent => {
            conn.state == CtState::Established && conn.mark == generation(rs)?.stamp()
        }
        Match::CtStampCurrent => conn.mark == generation(rs)?.stamp(),
        Match::CtReply => conn.reply,
        Match::CtRevoked => conn.mark & Generation::MASK == Generation::MASK,
        Match::CtRelated => conn.state == CtState::Related,
        Match::NeighbourDiscovery => fam == Family::V6 && matches!(pkt.l4, L4::Icmpv6(133..=137)),
        Match::SelfPair(f, set) => {
            let els = set_of(rs, set, SetKind::AddrPair(*f))?;
            fam == *f && els.contains(&Element::AddrPair(pkt.src, pkt.dst))
        }
        Match::AddrNotIn(f, a, set) => {
            // `ip saddr != @set` only matches packets of that family.
            fam == *f && !eval_match(rs, &Match::AddrIn(*f, *a, set.clone()), pkt, local, conn)?
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

    /// Pods a and b (b isolated for ingress); with `allow`, a policy lets a
    /// reach b on TCP 80.
    fn table(allow: bool, generation: Generation) -> Ruleset {
        let mut yaml = String::from(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: ns, labels: {app: a}}\n\
             spec: {nodeName: n1, containers: [{name: c, image: i}]}\n\
             status: {phase: Running, podIPs: [{ip: 10.244.1.1}]}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: ns, labels: {app: b}}\n\
             spec: {nodeName: n1, containers: [{name: c, image: i}]}\n\
             status: {phase: Running, podIPs: [{ip: 10.244.1.2}]}\n---\n\
             apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: deny, namespace: ns}\nspec: {podSelector: {}}\n",
        );
        if allow {
            yaml.push_str(
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                 metadata: {name: allow, namespace: ns}\n\
                 spec: {podSelector: {matchLabels: {app: b}}, ingress: [{from: [{podSelector: \
                 {matchLabels: {app: a}}}], ports: [{port: 80}]}]}\n",
            );
        }
        let mut objs = nftpol::core::k8s::Objects::default();
        let mut diags = Vec::new();
        nftpol::core::k8s::parse_into(&yaml, "t.yaml", &mut objs, &mut diags);
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        let opts = nftpol::core::compile::Options::default();
        let mut rs = nftpol::core::compile::compile_objects(&objs, &opts).ruleset;
        rs.generation = Some(generation);
        rs
    }

    #[test]
    fn a_new_generation_cuts_flows_it_denies_and_keeps_the_others() {
        let pkt = Packet {
            src: "10.244.1.1".parse().unwrap(),
            dst: "10.244.1.2".parse().unwrap(),
            l4: L4::Port(Protocol::Tcp, 80),
            established: false,
        };
        let reply = Packet {
            src: pkt.dst,
            dst: pkt.src,
            l4: L4::Port(Protocol::Tcp, 40000),
            established: true,
        };
        let g1 = Generation::FIRST;
        let g2 = g1.next();
        let allowed = table(true, g1);
        let mut conn = Conn::new();
        let t = trace_conn(&allowed, &pkt, &mut conn).unwrap();
        assert_eq!(t.outcome, Outcome::Accept, "the policy allows the flow");
        assert_eq!(conn.mark, g1.stamp(), "accepted and stamped");
        let mut est = conn.established(false);
        let t = trace_conn(&allowed, &pkt, &mut est).unwrap();
        assert_eq!(
            (t.outcome, t.path.len()),
            (Outcome::Accept, 1),
            "an established packet costs one rule: {:?}",
            t.path
        );
        let mut rep = conn.established(true);
        assert_eq!(
            trace_conn(&allowed, &reply, &mut rep).unwrap().outcome,
            Outcome::Accept
        );

        // An unrelated change (a new generation, same policy): evaluated once, restamped.
        let still = table(true, g2);
        let mut rep = conn.established(true);
        assert_eq!(
            trace_conn(&still, &reply, &mut rep).unwrap().outcome,
            Outcome::Accept,
            "a reply with an old stamp passes: the original direction decides"
        );
        assert_eq!(rep.mark, g1.stamp(), "a reply does not restamp");
        let mut est = conn.established(false);
        assert_eq!(
            trace_conn(&still, &pkt, &mut est).unwrap().outcome,
            Outcome::Accept
        );
        assert_eq!(est.mark, g2.stamp(), "evaluated again and restamped");

        // The allowing policy removed: the next original packet is dropped
        // and marks the flow revoked, so its replies are dropped too.
        let denied = table(false, g2);
        let mut est = conn.established(false);
        assert_eq!(
            trace_conn(&denied, &pkt, &mut est).unwrap().outcome,
            Outcome::Drop
        );
        assert_eq!(est.mark & Generation::MASK, Generation::MASK, "revoked");
        let mut rep = est.established(true);
        assert_eq!(
            trace_conn(&denied, &reply, &mut rep).unwrap().outcome,
            Outcome::Drop
        );
        // Allowed again later: restamped.
        let again = table(true, g2.next());
        let mut est = est.established(false);
        assert_eq!(
            trace_conn(&again, &pkt, &mut est).unwrap().outcome,
            Outcome::Accept
        );
        assert_eq!(est.mark, g2.next().stamp());
    }

    #[test]
    fn a_connection_whose_other_mark_bits_are_in_use_is_evaluated_every_packet() {
        let pkt = Packet {
            src: "10.244.1.1".parse().unwrap(),
            dst: "10.244.1.2".parse().unwrap(),
            l4: L4::Port(Protocol::Tcp, 80),
            established: false,
        };
        let rs = table(true, Generation::FIRST);
        let mut conn = Conn {
            mark: 0x80,
            ..Conn::new()
        };
        assert_eq!(
            trace_conn(&rs, &pkt, &mut conn).unwrap().outcome,
            Outcome::Accept
        );
        assert_eq!(conn.mark, 0x80, "the other bits are kept, no stamp");
        let mut est = conn.established(false);
        let t = trace_conn(&rs, &pkt, &mut est).unwrap();
        assert_eq!(t.outcome, Outcome::Accept);
        assert!(t.path.len() > 2, "evaluated again: {:?}", t.path);
        let denied = table(false, Generation::FIRST.next());
        let mut est = conn.established(false);
        assert_eq!(
            trace_conn(&denied, &pkt, &mut est).unwrap().outcome,
            Outcome::Drop
        );
        assert_eq!(
            est.mark,
            0x80 | Generation::MASK,
            "revoked, other bits kept"
        );
    }

    #[test]
    fn generations_wrap_past_the_revoked_and_unstamped_values() {
        let last = Generation::new(Generation::MAX);
        assert_eq!(last.next(), Generation::FIRST);
        assert_ne!(last.stamp(), Generation::MASK, "never the revoked stamp");
        assert_eq!(
            Generation::new(0),
            Generation::FIRST,
            "never the unstamped one"
        );
        assert_eq!(Generation::from_stamp(last.stamp()), Some(last));
        assert_eq!(Generation::from_stamp(Generation::MASK), None);
    }
}
