//! A typed nftables ruleset: exactly the object and rule shapes nftpol emits.
//!
//! Keeping the shapes closed (enums, not strings) lets the renderers and the
//! test tracer handle every case and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::core::model::{Family, Protocol, Range};

/// The table nftpol owns (family `inet`).
pub const TABLE: &str = "nftpol";

/// Key type of a named set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    /// Addresses of pods (`ipv4_addr` / `ipv6_addr`).
    Addr(Family),
    /// Address ranges (`flags interval`), for ipBlocks.
    AddrInterval(Family),
    /// `addr . addr`, a pod talking to itself.
    AddrPair(Family),
    /// `addr . inet_proto . inet_service`, named ports resolved per pod.
    AddrProtoPort(Family),
    /// `inet_proto . inet_service` with intervals, numeric ports and ranges.
    ProtoPort,
}

/// One element of a set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// An address.
    Addr(IpAddr),
    /// An address range.
    Range(Range),
    /// `saddr . daddr`.
    AddrPair(IpAddr, IpAddr),
    /// `addr . proto . port`.
    AddrProtoPort(IpAddr, Protocol, u16),
    /// `proto . first-last`.
    ProtoPort(Protocol, u16, u16),
}

/// A named set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Key type.
    pub kind: SetKind,
    /// What the set implements (namespace/policy/selector).
    pub comment: String,
    /// Elements, sorted.
    pub elements: BTreeSet<Element>,
}

/// A verdict map from pod address to `jump <chain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictMap {
    /// Address family of the key.
    pub family: Family,
    /// What the map dispatches.
    pub comment: String,
    /// Pod address → chain to jump to.
    pub elements: BTreeMap<IpAddr, String>,
}

/// Which address of the packet a match looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    /// Source address.
    Src,
    /// Destination address.
    Dst,
}

impl Addr {
    /// `saddr` / `daddr`.
    pub fn nft(self) -> &'static str {
        match self {
            Addr::Src => "saddr",
            Addr::Dst => "daddr",
        }
    }
}

/// One match expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Match {
    /// `ct state established,related`.
    CtEstablishedRelated,
    /// `icmpv6 type { neighbour discovery types }`.
    NeighbourDiscovery,
    /// `ip saddr . ip daddr @set` (a pod talking to itself).
    SelfPair(Family, String),
    /// `ip saddr @set` / `ip daddr @set`.
    AddrIn(Family, Addr, String),
    /// `ip saddr != @set` / `ip daddr != @set` (the new-pod guard: an address
    /// that is not a known local pod's).
    AddrNotIn(Family, Addr, String),
    /// `meta l4proto . th dport @set`.
    ProtoPortIn(String),
    /// `ip daddr . meta l4proto . th dport @set` (named ports of the destination).
    DstProtoPortIn(Family, String),
    /// The destination is an address of this host (`fib daddr type local`):
    /// a pod reaching the node it runs on (seen in the `input` hook).
    FibDaddrLocal,
    /// `ct state established ct mark @ct-generation`: an established flow
    /// stamped by the current ruleset generation (docs/nftables.md, "Revoking
    /// established flows").
    CtEstablishedCurrent,
    /// `ct mark @ct-generation`: the connection carries the current stamp.
    CtStampCurrent,
    /// `ct direction reply`: a reply of a tracked flow.
    CtReply,
    /// `ct mark and MASK == MASK`: the flow's stamp says revoked.
    CtRevoked,
    /// `ct state related`: ICMP errors (and helper flows) of a tracked flow.
    CtRelated,
}

/// `limit rate RATE/second burst BURST packets log prefix "PREFIX" group GROUP`:
/// sends at most `rate` packets per second (after a burst of `burst`) to an
/// NFLOG group, where the agent reads them (see docs/drop-logging.md).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Log {
    /// NFLOG group (`log group N`).
    pub group: u16,
    /// Packets per second logged at most, once the burst is used up.
    pub rate: u32,
    /// Packets logged back to back before the rate applies.
    pub burst: u32,
    /// Log prefix; nftpol's says which group chain dropped the packet.
    pub prefix: String,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Accept.
    Accept,
    /// Drop, counting packets.
    CountedDrop,
    /// Jump to a chain (returning when it ends without a verdict).
    Jump(String),
    /// Go to a chain (never returning here).
    Goto(String),
    /// Return to the chain that jumped here (from a base chain: its policy).
    /// Audit mode: an audited policy's rule that does not decide.
    Return,
    /// `ip saddr vmap @map` / `ip daddr vmap @map`: jump chosen by address, or
    /// fall through when the address is not in the map.
    AddrVmap(Family, Addr, String),
    /// Not a verdict: log the packet (rate-limited) and continue with the
    /// next rule. Placed right before a group chain's drop (so an accepted
    /// packet is never logged), before a ClusterNetworkPolicy Deny rule with
    /// the same matches, and in audit mode where a drop would be.
    Log(Log),
    /// Not a verdict: `ct mark set ct mark or MASK` (the flow's stamp says
    /// revoked, so its replies are dropped too) and continue. Placed right
    /// before every drop when revocation is on.
    CtRevoke,
    /// Not a verdict: `ct mark set ct mark and ~MASK` (no stamp: the next
    /// packet is evaluated again) and continue.
    CtClearStamp,
    /// Not a verdict: `ct mark set ct mark and ~MASK map @ct-stamp` (the
    /// current generation's stamp, for connections whose other mark bits are
    /// zero; a miss leaves the mark alone) and continue.
    CtStamp,
}

/// A rule: all matches ANDed, then the verdict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    /// Matches, in order.
    pub matches: Vec<Match>,
    /// Verdict.
    pub verdict: Verdict,
    /// Short note on where the rule comes from.
    pub comment: Option<String>,
}

/// A base chain's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    /// Hook name (`forward`).
    pub hook: &'static str,
    /// Priority (`filter` = 0).
    pub priority: i32,
}

/// A chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Base-chain hook, if any.
    pub hook: Option<Hook>,
    /// What the chain implements.
    pub comment: String,
    /// Rules, in order.
    pub rules: Vec<Rule>,
}

/// The whole `inet nftpol` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Named sets by name.
    pub sets: BTreeMap<String, Set>,
    /// Verdict maps by name.
    pub maps: BTreeMap<String, VerdictMap>,
    /// Chains in render order (base chain first).
    pub chains: Vec<(String, Chain)>,
    /// With revocation of established flows: the ruleset generation, held in
    /// the set `ct-generation` and the map `ct-stamp` (one element each), so
    /// a new generation is an element update. The compiler writes
    /// [`Generation::FIRST`]; whoever loads the table picks the real one.
    pub generation: Option<Generation>,
}

/// A ruleset generation: which `ct mark` stamp the current table accepts
/// without evaluating the policy again.
///
/// nftpol owns the bits [`Generation::MASK`] of `ct mark` (the high 20) and
/// never changes the others. Stamp 0 means "not stamped" (a flow from before
/// the table, or whose other mark bits are in use); all ones means revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(u32);

impl Generation {
    /// The `ct mark` bits nftpol owns.
    pub const MASK: u32 = 0xffff_f000;
    /// Where the generation starts within `ct mark`.
    const SHIFT: u32 = 12;
    /// The largest generation; the next one is 1 again (all ones is the
    /// revoked stamp, 0 the unstamped one).
    pub const MAX: u32 = (Self::MASK >> Self::SHIFT) - 1;
    /// The generation a compiled (not yet loaded) ruleset carries.
    pub const FIRST: Generation = Generation(1);

    /// Generation `n`, brought into `1..=MAX` (0 becomes 1, larger values wrap).
    pub fn new(n: u32) -> Generation {
        Generation(n.saturating_sub(1) % Self::MAX + 1)
    }

    /// The generation after this one (wraps from [`Generation::MAX`] to 1).
    pub fn next(self) -> Generation {
        Generation::new(self.0 + 1)
    }

    /// Its number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Its `ct mark` stamp (the other bits zero).
    pub fn stamp(self) -> u32 {
        self.0 << Self::SHIFT
    }

    /// The generation a `ct mark` stamp stands for, if it is one.
    pub fn from_stamp(mark: u32) -> Option<Generation> {
        let n = (mark & Self::MASK) >> Self::SHIFT;
        (mark & !Self::MASK == 0 && (1..=Self::MAX).contains(&n)).then_some(Generation(n))
    }
}

impl Ruleset {
    /// A chain by name.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// Counts for reports and metrics.
    pub fn stats(&self) -> Stats {
        Stats {
            sets: self.sets.len(),
            maps: self.maps.len(),
            chains: self.chains.len(),
            rules: self.chains.iter().map(|(_, c)| c.rules.len()).sum(),
            elements: self.sets.values().map(|s| s.elements.len()).sum::<usize>()
                + self.maps.values().map(|m| m.elements.len()).sum::<usize>(),
        }
    }
}

/// Size of a ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Named sets.
    pub sets: usize,
    /// Verdict maps.
    pub maps: usize,
    /// Chains.
    pub chains: usize,
    /// Rules over all chains.
    pub rules: usize,
    /// Set and map elements.
    pub elements: usize,
}
