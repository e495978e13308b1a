//! The bodies of the fuzz targets, shared by the `cargo fuzz` targets in
//! `fuzz/` (nightly, libFuzzer) and by `tests/fuzz_smoke.rs` (stable, CI),
//! so both run exactly the same code. docs/testing.md ("Fuzzing") has the
//! commands and figures.
//!
//! Each body takes arbitrary bytes and must not panic; a panic (including a
//! failed assertion on the invariants below) is a finding. The bodies live in
//! `kernel`, the lowest band that sees all three parsers (the listing and
//! NFLOG parsers are kernel code; the loader and compiler are core); they do
//! no IO themselves. [`seeds`] reads the seed inputs from the repository.
//!
//! - [`loader`]: YAML/JSON bytes → `parse_into_with` → `compile_objects`
//!   (conversion and validation, graph, compiler) → `nft -f` text and
//!   libnftables JSON. Inputs over [`MAX_INPUT`] bytes are ignored.
//! - [`nflog`]: bytes as one datagram → the NFLOG batch parser, and as one
//!   packet → the IP header parser.
//! - [`listing`]: bytes as UTF-8 (lossily) → the `nft -j list table` parser.

use std::path::Path;

use crate::core::compile::{self, DropLog, Options};
use crate::core::k8s::load::{Objects, UnknownFields, parse_into_with};
use crate::core::nft::{json, render};
use crate::kernel::listing;
use crate::kernel::nflog;

/// Largest input [`loader`] reads (64 KiB); longer ones return at once. Every
/// `testdata/` file but the CRD fits. Without a cap libFuzzer grows inputs
/// until one document takes seconds to parse and compile (a slow unit, not a
/// bug: the work is linear-ish in the input), which would drown real timeouts.
pub const MAX_INPUT: usize = 64 * 1024;

/// Length of a netlink message header: every packet or skipped message of a
/// batch consumed at least one.
const NLMSG_HDRLEN: usize = 16;

/// The loader target: bytes → objects → model → ruleset → text and JSON.
///
/// # Panics
///
/// On a bug: the pipeline panicked, the JSON rendering is not JSON, or the
/// listing the fake `nft` prints for the ruleset does not parse back to what
/// the drift check expects.
pub fn loader(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let text = String::from_utf8_lossy(data);
    let mut objs = Objects::default();
    let mut diags = Vec::new();
    parse_into_with(&text, "fuzz", UnknownFields::Reject, &mut objs, &mut diags);
    for d in &diags {
        let _ = d.to_string();
    }
    let opts = Options {
        node: None,
        revoke_established: true,
        // Every namespace logs: the drop-log rules and index are compiled too.
        drop_log: DropLog {
            all_namespaces: true,
            ..DropLog::default()
        },
        // With the Nodes' podCIDRs (if a seed has some) the guard is compiled too.
        new_pods: compile::NewPods::default(),
    };
    let out = compile::compile_objects(&objs, &opts);
    for d in &out.diagnostics {
        let _ = d.to_string();
    }
    let _ = render::script(&out.ruleset);
    let j = json::script(&out.ruleset);
    assert!(
        serde_json::from_str::<serde_json::Value>(&j).is_ok(),
        "json::script wrote invalid JSON"
    );
    assert_eq!(
        listing::parse(&listing::render(&out.ruleset)),
        Some(listing::expected(&out.ruleset)),
        "a listing of the ruleset does not parse back to its expected content"
    );
}

/// The NFLOG target: bytes as a datagram from the kernel, and as a packet.
///
/// # Panics
///
/// On a bug: the parser panicked, or counted more messages than the datagram
/// can hold.
pub fn nflog(data: &[u8]) {
    let b = nflog::parse(data);
    assert!(
        b.packets.len() + b.skipped <= data.len() / NLMSG_HDRLEN,
        "more messages than headers"
    );
    let _ = nflog::parse_ip(data);
}

/// The listing target: bytes (UTF-8, lossily) as `nft -j list table` output.
///
/// # Panics
///
/// On a bug: the parser panicked, or [`listing::parse`] and
/// [`listing::read`] disagree.
pub fn listing(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (content, _counters) = listing::read(&text);
    assert_eq!(listing::parse(&text), content, "parse and read disagree");
}

/// Seed inputs for each target, built from the repository at `root`.
#[derive(Debug, Default)]
pub struct Seeds {
    /// Every `testdata/` YAML or JSON file up to [`MAX_INPUT`] bytes, and each
    /// case directory's files joined as one multi-document YAML (so pods and
    /// policies meet in the compiler).
    pub loader: Vec<Vec<u8>>,
    /// NFLOG datagrams: IPv4 TCP, ICMP and fragment, IPv6 UDP behind a
    /// hop-by-hop header, a two-message batch, an acknowledgement.
    pub nflog: Vec<Vec<u8>>,
    /// `rulesets/*.json` (libnftables JSON, listing-shaped) and the listing
    /// of each case's compiled ruleset.
    pub listing: Vec<Vec<u8>>,
}

/// Reads the seeds from `root` (the repository: `testdata/`, `rulesets/`).
///
/// # Errors
///
/// When a directory or file cannot be read.
pub fn seeds(root: &Path) -> std::io::Result<Seeds> {
    let mut s = Seeds::default();
    let mut dirs = vec![root.join("testdata")];
    while let Some(dir) = dirs.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        let mut joined = Vec::new();
        for p in entries {
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let ext = p.extension().and_then(|e| e.to_str());
            if !matches!(ext, Some("yaml" | "yml" | "json")) {
                continue;
            }
            let bytes = std::fs::read(&p)?;
            if bytes.len() > MAX_INPUT {
                continue;
            }
            if ext != Some("json") {
                joined.extend_from_slice(b"---\n");
                joined.extend_from_slice(&bytes);
                joined.push(b'\n');
            }
            s.loader.push(bytes);
        }
        if !joined.is_empty() && joined.len() <= MAX_INPUT {
            s.loader.push(joined);
        }
    }
    let mut rulesets: Vec<_> = std::fs::read_dir(root.join("rulesets"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    rulesets.sort();
    for p in rulesets {
        if p.extension().is_some_and(|e| e == "json") {
            s.listing.push(std::fs::read(&p)?);
        }
    }
    for input in &s.loader {
        let mut objs = Objects::default();
        let text = String::from_utf8_lossy(input);
        parse_into_with(
            &text,
            "seed",
            UnknownFields::Warn,
            &mut objs,
            &mut Vec::new(),
        );
        let rs = compile::compile_objects(&objs, &Options::default()).ruleset;
        if !rs.sets.is_empty() || !rs.maps.is_empty() {
            s.listing.push(listing::render(&rs).into_bytes());
        }
    }
    s.nflog = nflog_seeds();
    Ok(s)
}

/// NFLOG datagrams in the kernel's layout (see [`Seeds::nflog`]).
fn nflog_seeds() -> Vec<Vec<u8>> {
    let mut v4 = vec![
        0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, 63, 6, 0, 0, 10, 244, 1, 10, 10, 244, 2, 11,
    ];
    v4.extend(40000u16.to_be_bytes());
    v4.extend(80u16.to_be_bytes());
    v4.extend([0; 16]);
    let mut icmp = v4.clone();
    icmp[9] = 1;
    icmp[20] = 8;
    let mut frag = v4.clone();
    frag[7] = 10;
    let mut v6 = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
    v6.extend([
        0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ]);
    v6.extend([
        0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x11,
    ]);
    v6.extend([17, 0, 0, 0, 0, 0, 0, 0]);
    v6.extend(5353u16.to_be_bytes());
    v6.extend(53u16.to_be_bytes());
    v6.extend([0, 8, 0, 0]);
    let mut batch = nflog_message("nftpol drop ingress-group-ABC", &v4);
    batch.extend(nflog_message("nftpol drop egress-group-XYZ", &v6));
    // An acknowledgement (NLMSG_ERROR, code 0) quoting a request header.
    let mut ack = Vec::new();
    ack.extend(36u32.to_ne_bytes());
    ack.extend(2u16.to_ne_bytes());
    ack.extend([0; 10]);
    ack.extend(0i32.to_ne_bytes());
    ack.extend(&batch[..16]);
    vec![
        nflog_message("nftpol drop ingress-group-ABC", &v4),
        nflog_message("p", &icmp),
        nflog_message("p", &frag),
        nflog_message("nftpol drop egress-group-XYZ", &v6),
        batch,
        ack,
    ]
}

/// One `NFULNL_MSG_PACKET`: nlmsghdr, nfgenmsg (AF_INET, group 9750), then
/// attributes (packet header, input interface, prefix, payload).
pub(crate) fn nflog_message(prefix: &str, payload: &[u8]) -> Vec<u8> {
    const NFNL_SUBSYS_ULOG: u16 = 4;
    let mut attrs = Vec::new();
    let mut attr = |ty: u16, data: &[u8]| {
        attrs.extend(((4 + data.len()) as u16).to_ne_bytes());
        attrs.extend(ty.to_ne_bytes());
        attrs.extend(data);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
    };
    attr(1, &[0x08, 0x00, 3, 0]); // NFULA_PACKET_HDR: ETH_P_IP, hook forward
    attr(4, &7u32.to_be_bytes()); // NFULA_IFINDEX_INDEV
    let mut p = prefix.as_bytes().to_vec();
    p.push(0);
    attr(10, &p); // NFULA_PREFIX
    attr(9, payload); // NFULA_PAYLOAD
    let len = NLMSG_HDRLEN + 4 + attrs.len();
    let mut m = Vec::new();
    m.extend((len as u32).to_ne_bytes());
    m.extend((NFNL_SUBSYS_ULOG << 8).to_ne_bytes());
    m.extend(0u16.to_ne_bytes());
    m.extend([0; 8]);
    m.extend([2, 0]);
    m.extend(9750u16.to_be_bytes());
    m.extend(attrs);
    m
}
