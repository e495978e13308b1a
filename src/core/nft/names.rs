//! Longer than 600 lines: every name nftpol generates lives in this one file on purpose (one place to audit name lengths and hash keys).
//! Every name nftpol gives an nftables object, fixed or generated, and the
//! drop-log prefix that carries a group chain's name. Nothing else in the
//! crate spells a chain, map or set name.
//!
//! Generated names are `<kind>-<HASH>[-<readable>][-v4|-v6]`, where HASH is
//! the first 8 characters of the base32 SHA-256 of the object's *canonical
//! key*: a string this module writes from the model's fields by an explicit
//! encoding (one per kind, below), never from `Debug` output or rendered nft
//! text, so a cosmetic change elsewhere cannot rename sets (a rename turns the
//! agent's next element delta into a full table swap). Equal input gives equal
//! names, and the readable part may be cut without losing uniqueness.
//!
//! Worst-case lengths, for inputs that passed validation:
//! - fixed names: at most 17 bytes (`filter-forward` 14, `ingress-pods-v4`
//!   15, `node-pod-cidrs-v6` 17);
//! - group chains: `ingress-group-` (14) + HASH (8) = 22;
//! - policy chains: `ingress-` (8) + HASH (8) + `-` (1) + namespace (63) +
//!   `/` (1) + policy name (253) = 334, so the readable part is cut to keep
//!   the name within [`MAX_NAME`] (128; the kernel allows 255);
//! - `pods-HASH-<namespace>-v6`: 5 + 8 + 1 + 63 + 3 = 80;
//! - `cidr-HASH-v6`: 16; `ports-HASH`: 14;
//! - `named-port-<port>-<proto>-v6`: 11 + 15 + 1 + 4 + 3 = 34;
//! - `named-port-HASH-<port>-<proto>-v6`: 11 + 8 + 1 + 15 + 1 + 4 + 3 = 43.
//!
//! Every generated name goes through one builder that cuts the readable part
//! so the whole name, family suffix included, fits in [`MAX_NAME`] even for
//! input that skipped validation.

use sha2::{Digest, Sha256};

use crate::core::model::{
    Cidr, Direction, Family, IpBlock, NamespaceScope, ObjectRef, Peer, PodMatch, Protocol,
    Requirement, Selector, Tier,
};

/// Longest name nftpol emits (the kernel allows 255).
pub const MAX_NAME: usize = 128;

/// Longest comment the kernel stores (NFTNL_UDATA_COMMENT_MAXLEN).
pub const MAX_COMMENT: usize = 128;

/// The base chain (hook forward): egress dispatch, then `goto` [`INGRESS_CHAIN`].
pub const FORWARD_CHAIN: &str = "filter-forward";

/// The comment of [`FORWARD_CHAIN`], the same in both layouts: a full
/// replacement keeps the base chain, and the kernel does not update a kept
/// chain's comment.
pub const FORWARD_CHAIN_COMMENT: &str =
    "nftpol: policy for pod traffic this node forwards (egress, then ingress)";

/// The chain that dispatches on the destination pod.
pub const INGRESS_CHAIN: &str = "pod-ingress";

/// The comment of [`INGRESS_CHAIN`], the same in both layouts (a structural
/// change keeps the chain, and the kernel keeps a kept chain's comment).
pub const INGRESS_CHAIN_COMMENT: &str =
    "ingress: dispatch on the destination pod (NetworkPolicy, then the Baseline tier if any)";

/// Every nftpol drop-log prefix starts with this; the group chain's name follows.
pub const LOG_PREFIX: &str = "nftpol drop ";

/// Every audit-mode ("would drop") log prefix starts with this; the audit
/// group chain's name, or a ClusterNetworkPolicy rule's log key, follows.
pub const AUDIT_LOG_PREFIX: &str = "nftpol audit ";

/// `node-pod-cidrs-v4` / `-v6`: the pod address ranges of this node (the
/// new-pod guard's scope; `compile::new_pods`).
pub fn node_pod_cidrs_set(f: Family) -> String {
    format!("node-pod-cidrs-{}", f.suffix())
}

/// `local-pods-v4` / `-v6`: every address of a pod enforced here (the
/// addresses the new-pod guard lets through).
pub fn local_pods_set(f: Family) -> String {
    format!("local-pods-{}", f.suffix())
}

/// `self-v4` / `self-v6`: `ip . ip` of every enforced pod.
pub fn self_set(f: Family) -> String {
    format!("self-{}", f.suffix())
}

/// `ingress-pods-v4`, `egress-pods-v6`, ...: enforced pod address → group chain.
pub fn dispatch_map(dir: Direction, f: Family) -> String {
    format!("{}-pods-{}", dir.as_str(), f.suffix())
}

/// The group chain of pods isolated in `dir` by exactly `policies` (sorted).
/// Key: the policies' [`object_key`]s, sorted as text, comma-separated.
pub fn group_chain(dir: Direction, policies: &[ObjectRef]) -> String {
    let mut key: Vec<String> = policies.iter().map(object_key).collect();
    key.sort();
    key.dedup();
    bounded(&group_prefix(dir), &key.join(","), "", "")
}

/// The group chain of pods that only audited policies (`policies`, sorted)
/// select in `dir`: `audit-ingress-group-HASH`. Key: as [`group_chain`]'s,
/// prefixed `audit:` (a set of audited policies is never an enforced group).
pub fn audit_group_chain(dir: Direction, policies: &[ObjectRef]) -> String {
    let mut key: Vec<String> = policies.iter().map(object_key).collect();
    key.sort();
    key.dedup();
    bounded(
        &format!("audit-{}", group_prefix(dir)),
        &format!("audit:{}", key.join(",")),
        "",
        "",
    )
}

/// The direction of a group chain, from its name alone (a logged packet may
/// name a chain of a newer table than the agent's index).
pub fn group_direction(chain: &str) -> Option<Direction> {
    let chain = chain.strip_prefix("audit-").unwrap_or(chain);
    Direction::ALL
        .into_iter()
        .find(|d| chain.starts_with(&format!("{}-", group_prefix(*d))))
}

fn group_prefix(dir: Direction) -> String {
    format!("{}-group", dir.as_str())
}

/// The chain of one policy in one direction: `ingress-HASH-namespace/name`.
/// Key: `<direction>:`[`object_key`].
pub fn policy_chain(dir: Direction, id: &ObjectRef) -> String {
    let key = format!("{}:{}", dir.as_str(), object_key(id));
    let readable = format!("{}/{}", id.namespace, id.name);
    bounded(dir.as_str(), &key, &readable, "")
}

/// The log prefix of a group chain's log rule.
pub fn log_prefix(group_chain: &str) -> String {
    format!("{LOG_PREFIX}{group_chain}")
}

/// The group chain a log prefix names; `None` for someone else's prefix.
pub fn log_prefix_chain(prefix: &str) -> Option<&str> {
    prefix.strip_prefix(LOG_PREFIX)
}

/// The log prefix of an audit-mode log rule: [`AUDIT_LOG_PREFIX`] and the
/// audit group chain or ClusterNetworkPolicy rule log key.
pub fn audit_log_prefix(key: &str) -> String {
    format!("{AUDIT_LOG_PREFIX}{key}")
}

/// The audit group chain or rule key an audit log prefix names.
pub fn audit_log_prefix_key(prefix: &str) -> Option<&str> {
    prefix.strip_prefix(AUDIT_LOG_PREFIX)
}

/// `named-port-<port>-<proto>-v4`: a named port of the enforced pods (ingress
/// rules). Port names are IANA_SVC_NAMEs, unique per protocol, so no hash.
pub fn local_named_port_set(port: &str, proto: Protocol, f: Family) -> String {
    let mut n = String::from("named-port-");
    push_readable(
        &mut n,
        &format!("{port}-{}", protocol_key(proto)),
        MAX_NAME - 3,
    );
    n.push('-');
    n.push_str(f.suffix());
    n
}

/// The chain of one ClusterNetworkPolicy in one direction:
/// `admin-ingress-HASH-name`, `baseline-egress-HASH-name`.
/// Key: `cnp:<tier>:<direction>:<name>` (name escaped).
pub fn cluster_policy_chain(tier: Tier, dir: Direction, name: &str) -> String {
    let key = format!("cnp:{}:{}:{}", tier.as_str(), dir.as_str(), escape(name));
    bounded(
        &format!("{}-{}", tier.as_str(), dir.as_str()),
        &key,
        name,
        "",
    )
}

/// The drop-log key of one Deny rule of a ClusterNetworkPolicy (it follows
/// [`LOG_PREFIX`]): `admin-ingress-HASH/RULE`, short enough for nft's log
/// prefix whatever the policy's name. HASH is the policy chain's.
pub fn cluster_rule_log_key(tier: Tier, dir: Direction, name: &str, rule: usize) -> String {
    let key = format!("cnp:{}:{}:{}", tier.as_str(), dir.as_str(), escape(name));
    format!("{}-{}-{}/{rule}", tier.as_str(), dir.as_str(), hash8(&key))
}

/// The direction of a ClusterNetworkPolicy rule's log key, from the key
/// alone (`admin-ingress-HASH/3` → ingress).
pub fn cluster_rule_log_key_direction(key: &str) -> Option<Direction> {
    let (stage, _) = key.split_once('/')?;
    Tier::ALL.into_iter().find_map(|t| {
        let rest = stage.strip_prefix(t.as_str())?.strip_prefix('-')?;
        Direction::ALL
            .into_iter()
            .find(|d| rest.starts_with(&format!("{}-", d.as_str())))
    })
}

/// The group chain of pods that the ClusterNetworkPolicies `policies` (in
/// evaluation order) of one tier select in `dir`: `admin-ingress-group-HASH`.
/// Key: the names, escaped, in evaluation order, comma-separated.
pub fn tier_group_chain(tier: Tier, dir: Direction, policies: &[&str]) -> String {
    let key: Vec<String> = policies.iter().map(|p| escape(p)).collect();
    bounded(&tier_group_prefix(tier, dir), &key.join(","), "", "")
}

fn tier_group_prefix(tier: Tier, dir: Direction) -> String {
    format!("{}-{}-group", tier.as_str(), dir.as_str())
}

/// `admin-ingress-pods-v4`, ...: enforced pod address → its group chain in the tier.
pub fn tier_dispatch_map(tier: Tier, dir: Direction, f: Family) -> String {
    format!("{}-{}-pods-{}", tier.as_str(), dir.as_str(), f.suffix())
}

/// The chain that starts a tier's stage in one direction: `admin-egress`,
/// `baseline-ingress`.
pub fn tier_stage_chain(tier: Tier, dir: Direction) -> String {
    format!("{}-{}", tier.as_str(), dir.as_str())
}

/// The base chain (hook input) that checks pods reaching their own node,
/// present only when ClusterNetworkPolicies exist.
pub const INPUT_CHAIN: &str = "filter-input";

/// The set holding the current generation's `ct mark` stamp (revocation of
/// established flows, docs/nftables.md).
pub const GENERATION_SET: &str = "ct-generation";

/// Comment of [`GENERATION_SET`].
pub const GENERATION_COMMENT: &str =
    "the ruleset generation: established flows with another stamp are evaluated again";

/// Comment of [`STAMP_MAP`].
pub const STAMP_COMMENT: &str =
    "a connection's other ct mark bits -> its mark with the generation's stamp";

/// The map from a connection's other `ct mark` bits to its new mark with
/// the current stamp.
pub const STAMP_MAP: &str = "ct-stamp";

/// The chain every accept of the policy walk goes to when revocation is on:
/// it stamps the flow with the ruleset generation, then accepts.
pub const STAMP_CHAIN: &str = "ct-stamp-accept";

/// The NetworkPolicy egress stage as a chain of its own (only with
/// ClusterNetworkPolicies, where an Admin `Pass` continues there).
pub const EGRESS_CHAIN: &str = "pod-egress";

/// `nodes-HASH-v4`: the addresses of the Nodes a selector matches. Key:
/// `nodes(<selector_key>)`.
pub fn nodes_set(sel: &Selector, f: Family) -> SetName {
    SetName {
        prefix: "nodes",
        key: format!("nodes({})", selector_key(sel)),
        readable: String::new(),
        family: Some(f),
    }
}

/// `networks-HASH-v4`: the union of a `networks` peer's CIDRs of one family.
/// Key: `networks(<networks_key>)` of those CIDRs.
pub fn networks_set(cidrs: &[Cidr], f: Family) -> SetName {
    SetName {
        prefix: "networks",
        key: format!("networks({})", networks_key(cidrs)),
        readable: String::new(),
        family: Some(f),
    }
}

/// A generated set's name: its kind, canonical key and readable part. The
/// compiler asks for [`SetName::name`] with salt 0 and, should two keys ever
/// hash alike, with a higher salt for the newcomer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetName {
    prefix: &'static str,
    key: String,
    readable: String,
    family: Option<Family>,
}

impl SetName {
    /// The canonical key the name is hashed from.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The name; `salt` > 0 appends that many `#` to the hashed key.
    pub fn name(&self, salt: usize) -> String {
        let key = format!("{}{}", self.key, "#".repeat(salt));
        let suffix = self.family.map(Family::suffix).unwrap_or("");
        bounded(self.prefix, &key, &self.readable, suffix)
    }
}

/// `pods-HASH[-namespace]-v4`: the addresses of the pods a peer selector
/// matches. Key: [`pod_match_key`].
pub fn pods_set(m: &PodMatch, f: Family) -> SetName {
    let readable = match &m.namespaces {
        NamespaceScope::Named(n) => n.clone(),
        NamespaceScope::Selector(_) => String::new(),
    };
    SetName {
        prefix: "pods",
        key: pod_match_key(m),
        readable,
        family: Some(f),
    }
}

/// `cidr-HASH-v4`: an ipBlock's addresses.
pub fn cidr_set(b: &IpBlock) -> SetName {
    SetName {
        prefix: "cidr",
        key: ip_block_key(b),
        readable: String::new(),
        family: Some(b.cidr.family),
    }
}

/// `ports-HASH`: a rule's numeric ports, as merged `(protocol, first, last)`
/// ranges. Key: [`ports_key`].
pub fn ports_set(ranges: &[(Protocol, u16, u16)]) -> SetName {
    SetName {
        prefix: "ports",
        key: ports_key(ranges),
        readable: String::new(),
        family: None,
    }
}

/// `named-port-HASH-<port>-<proto>-v4`: a named port of the pods an egress
/// peer matches (`None`: every pod). Key: [`peer_key`]`;port=<port>;proto=<proto>`.
pub fn peer_named_port_set(peer: Option<&Peer>, port: &str, proto: Protocol, f: Family) -> SetName {
    SetName {
        prefix: "named-port",
        key: format!(
            "{};port={};proto={}",
            peer_key(peer),
            escape(port),
            protocol_key(proto)
        ),
        readable: format!("{port}-{}", protocol_key(proto)),
        family: Some(f),
    }
}

// Canonical keys. Each is written here, field by field, so its bytes change
// only when this file does (the tests pin them). Free text (names, label keys
// and values) is [`escape`]d, so the separators below stay unambiguous and
// distinct inputs give distinct keys.

/// Canonical key of a namespaced object: `namespace/name`, both escaped.
pub fn object_key(id: &ObjectRef) -> String {
    format!("{}/{}", escape(&id.namespace), escape(&id.name))
}

/// Canonical key of an ipBlock: `cidr[ except cidr,cidr...]`, excepts in
/// address order, each `address/length` with the address as `std` writes it.
pub fn ip_block_key(b: &IpBlock) -> String {
    let cidr = |c: &Cidr| {
        let addr = crate::core::model::ipblock::u128_to_ip(c.family, c.addr);
        format!("{addr}/{}", c.len)
    };
    let mut except: Vec<_> = b.except.iter().map(|c| (c.addr, c.len, cidr(c))).collect();
    except.sort();
    except.dedup();
    let mut key = cidr(&b.cidr);
    if !except.is_empty() {
        let list: Vec<String> = except.into_iter().map(|(_, _, s)| s).collect();
        key.push_str(" except ");
        key.push_str(&list.join(","));
    }
    key
}

/// Canonical key of a protocol: `tcp`, `udp`, `sctp`.
pub fn protocol_key(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// Canonical key of numeric ports: each range `proto/port` or
/// `proto/first-last`, sorted as text, deduplicated, comma-separated
/// (`tcp/80,udp/8000-8100`).
pub fn ports_key(ranges: &[(Protocol, u16, u16)]) -> String {
    let mut items: Vec<String> = ranges
        .iter()
        .map(|(p, a, b)| match a == b {
            true => format!("{}/{a}", protocol_key(*p)),
            false => format!("{}/{a}-{b}", protocol_key(*p)),
        })
        .collect();
    items.sort();
    items.dedup();
    items.join(",")
}

/// Canonical key of a pod selector peer: `ns=<namespace>;pods=<selector>` for
/// one namespace by name, `nssel=<selector>;pods=<selector>` for namespaces
/// chosen by labels (selectors as [`selector_key`]).
pub fn pod_match_key(m: &PodMatch) -> String {
    let scope = match &m.namespaces {
        NamespaceScope::Named(n) => format!("ns={}", escape(n)),
        NamespaceScope::Selector(s) => format!("nssel={}", selector_key(s)),
    };
    format!("{scope};pods={}", selector_key(&m.pods))
}

/// Canonical key of a label selector: one item per requirement —
/// `key in (v,...)`, `key notin (v,...)`, `key exists`, `key !exists`, values
/// sorted — the items sorted as text, deduplicated and comma-separated. The
/// empty selector (everything) is the empty string.
pub fn selector_key(s: &Selector) -> String {
    let values = |vs: &std::collections::BTreeSet<String>| {
        let mut v: Vec<String> = vs.iter().map(|x| escape(x)).collect();
        v.sort();
        v.dedup();
        v.join(",")
    };
    let mut items: Vec<String> = s
        .requirements()
        .iter()
        .map(|r| match r {
            Requirement::In(k, vs) => format!("{} in ({})", escape(k), values(vs)),
            Requirement::NotIn(k, vs) => format!("{} notin ({})", escape(k), values(vs)),
            Requirement::Exists(k) => format!("{} exists", escape(k)),
            Requirement::DoesNotExist(k) => format!("{} !exists", escape(k)),
        })
        .collect();
    items.sort();
    items.dedup();
    items.join(",")
}

/// Canonical key of a rule's peer: `all` (no peer: every pod),
/// `pods(<pod_match_key>)` or `cidr(<ip_block_key>)`.
pub fn peer_key(peer: Option<&Peer>) -> String {
    match peer {
        None => "all".to_string(),
        Some(Peer::Pods(m)) => format!("pods({})", pod_match_key(m)),
        Some(Peer::IpBlock(b)) => format!("cidr({})", ip_block_key(b)),
        Some(Peer::Nodes(sel)) => format!("nodes({})", selector_key(sel)),
        Some(Peer::Networks(cidrs)) => format!("networks({})", networks_key(cidrs)),
    }
}

/// Canonical key of a `networks` peer: its CIDRs as text, sorted, comma-separated.
pub fn networks_key(cidrs: &[Cidr]) -> String {
    let mut v: Vec<String> = cidrs.iter().map(|c| c.to_string()).collect();
    v.sort();
    v.dedup();
    v.join(",")
}

/// Free text inside a key: `%`, whitespace and the separators `,;=()/` as
/// `%XX` (UTF-8 bytes, upper-case hex); everything else as is. Kubernetes
/// names hold none of these, label keys only `/`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '%' || c.is_whitespace() || ",;=()/".contains(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `prefix-HASH[-readable][-suffix]`, the readable part cut so the whole
/// name fits in [`MAX_NAME`].
fn bounded(prefix: &str, key: &str, readable: &str, suffix: &str) -> String {
    let mut n = format!("{prefix}-{}", hash8(key));
    let room = MAX_NAME
        - if suffix.is_empty() {
            0
        } else {
            suffix.len() + 1
        };
    if !readable.is_empty() {
        n.push('-');
        push_readable(&mut n, readable, room);
    }
    if !suffix.is_empty() {
        n.push('-');
        n.push_str(suffix);
    }
    n
}

/// Appends `text` while `n` is shorter than `limit`, replacing characters nft
/// identifiers cannot hold by `_` (so every pushed character is one byte).
fn push_readable(n: &mut String, text: &str, limit: usize) {
    for c in text.chars() {
        if n.len() >= limit {
            break;
        }
        n.push(if c.is_ascii_alphanumeric() || "/-_.".contains(c) {
            c
        } else {
            '_'
        });
    }
}

/// First 8 base32 characters of SHA-256 over `key`.
pub fn hash8(key: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(key.as_bytes());
    let mut bits: u64 = 0;
    for b in &digest[..5] {
        bits = (bits << 8) | u64::from(*b);
    }
    (0..8)
        .map(|i| ALPHABET[((bits >> (35 - 5 * i)) & 31) as usize] as char)
        .collect()
}

/// A comment that nft accepts: no double quotes, at most [`MAX_COMMENT`] bytes.
pub fn comment(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c == '"' || c.is_control() { '\'' } else { c })
        .collect();
    if clean.len() <= MAX_COMMENT {
        return clean;
    }
    let mut cut = MAX_COMMENT - 3;
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &clean[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_bounded_and_safe() {
        assert_eq!(hash8("x"), hash8("x"));
        assert_ne!(hash8("x"), hash8("y"));
        assert_eq!(hash8("x").len(), 8);
        let long = format!("{}/{}", "n".repeat(63), "p".repeat(253));
        let n = bounded("ingress", &long, &long, "");
        assert!(n.len() <= MAX_NAME, "{} bytes", n.len());
        assert!(n.starts_with("ingress-"));
        assert_eq!(
            bounded("x", "k", "a b\"c", ""),
            format!("x-{}-a_b_c", hash8("k"))
        );
    }

    /// The canonical keys are a contract: a set keeps its name across
    /// releases only while these bytes stay the same.
    #[test]
    fn canonical_keys_are_pinned() {
        use std::collections::BTreeSet;
        let vals = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let sel = Selector::new(vec![
            Requirement::In("tier".into(), vals(&["web", "api"])),
            Requirement::Exists("app.kubernetes.io/name".into()),
            Requirement::DoesNotExist("canary".into()),
            Requirement::NotIn("env".into(), vals(&["dev"])),
        ]);
        assert_eq!(
            selector_key(&sel),
            "app.kubernetes.io%2Fname exists,canary !exists,env notin (dev),tier in (api,web)"
        );
        assert_eq!(selector_key(&Selector::everything()), "");
        let named = PodMatch {
            namespaces: NamespaceScope::Named("default".into()),
            pods: Selector::from_labels([("role", "db")]),
        };
        assert_eq!(pod_match_key(&named), "ns=default;pods=role in (db)");
        let by_labels = PodMatch {
            namespaces: NamespaceScope::Selector(Selector::from_labels([("team", "a")])),
            pods: Selector::everything(),
        };
        assert_eq!(pod_match_key(&by_labels), "nssel=team in (a);pods=");
        assert_eq!(peer_key(None), "all");
        assert_eq!(
            peer_key(Some(&Peer::Pods(named))),
            "pods(ns=default;pods=role in (db))"
        );
        assert_eq!(
            ports_key(&[
                (Protocol::Udp, 8000, 8100),
                (Protocol::Tcp, 80, 80),
                (Protocol::Tcp, 80, 80)
            ]),
            "tcp/80,udp/8000-8100"
        );
        assert_eq!(object_key(&ObjectRef::new("default", "db")), "default/db");
        // Separators inside free text are escaped, so keys stay unambiguous.
        assert_eq!(
            escape("a,b;c=d(e)f/g%h i"),
            "a%2Cb%3Bc%3Dd%28e%29f%2Fg%25h%20i"
        );
        let tricky = Selector::from_labels([("k", "v,x in (y)")]);
        let plain = Selector::new(vec![
            Requirement::In("k".into(), vals(&["v"])),
            Requirement::In("x".into(), vals(&["y"])),
        ]);
        assert_ne!(selector_key(&tricky), selector_key(&plain));
    }

    #[test]
    fn comments_are_bounded_and_unquoted() {
        assert_eq!(comment("say \"hi\""), "say 'hi'");
        let c = comment(&"é".repeat(100));
        assert!(c.len() <= MAX_COMMENT && c.ends_with("..."), "{c}");
    }
}
