//! A stable-toolchain smoke run of the three fuzz targets (CI has no
//! nightly): each body in `nftpol::kernel::fuzz` (exactly what the `cargo
//! fuzz` targets in `fuzz/` run) over its seeds from `testdata/` and
//! `rulesets/`, then over a few thousand deterministic mutations of them
//! (the test kit's seeded generator, so a failure reproduces). The bodies panic on
//! a bug; the real fuzzing is hack/fuzz.sh (docs/testing.md, "Fuzzing").

use nftpol_testkit::synth::Rng;
use std::path::Path;
use std::time::Instant;

use nftpol::kernel::fuzz::{self, Seeds};

/// Mutations per target. The loader is the slow one (a compile per input).
const LOADER_MUTATIONS: usize = 3_000;
const NFLOG_MUTATIONS: usize = 20_000;
const LISTING_MUTATIONS: usize = 10_000;

/// Fragments spliced into inputs: YAML and JSON syntax, and values at the
/// edges of what the loader, the IP parser and the listing parser accept.
const TOKENS: &[&[u8]] = &[
    b"---\n",
    b": ",
    b"- ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\n  ",
    b"null",
    b"-1",
    b"0",
    b"65535",
    b"65536",
    b"4294967296",
    b"0.0.0.0/0",
    b"::/0",
    b"10.0.0.1/33",
    b"fd00::1/129",
    b"NotIn",
    b"DoesNotExist",
    b"endPort",
    b"SCTP",
    b"interval",
    b"\"range\"",
    b"\"prefix\"",
    b"\"elem\"",
    b"&a",
    b"*a",
    b"!!binary",
    b"\xff\xfe",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
];

/// One to four libFuzzer-style mutations of `input`: byte flips, random
/// bytes, deletions, duplications, token insertions, truncation, splicing
/// with `other`.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.below(256) as u8),
            2 => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 => {
                let end = (at + 1 + rng.below(32)).min(v.len());
                let piece = v[at.min(end)..end].to_vec();
                v.splice(at..at, piece);
            }
            4 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            5 => v.truncate(at),
            _ => {
                let from = rng.below(other.len() + 1);
                let end = (from + 1 + rng.below(64)).min(other.len());
                v.splice(at..at, other[from.min(end)..end].iter().copied());
            }
        }
    }
    v
}

fn seeds() -> Seeds {
    fuzz::seeds(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("the seeds read")
}

/// Runs `body` over every seed, then `mutations` mutated seeds (those up to
/// `max_seed` bytes, so one mutation costs little); returns how many inputs
/// it ran.
fn smoke(
    name: &str,
    body: fn(&[u8]),
    seeds: &[Vec<u8>],
    mutations: usize,
    max_seed: usize,
) -> usize {
    let start = Instant::now();
    for s in seeds {
        body(s);
    }
    let small: Vec<&Vec<u8>> = seeds.iter().filter(|s| s.len() <= max_seed).collect();
    assert!(
        !small.is_empty(),
        "{name}: no seed of at most {max_seed} bytes"
    );
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    for i in 0..mutations {
        let a = small[rng.below(small.len())];
        let b = small[rng.below(small.len())];
        let input = mutate(&mut rng, a, b);
        // A failure names the iteration; rerunning reproduces it.
        let r = std::panic::catch_unwind(|| body(&input));
        if r.is_err() {
            panic!(
                "{name}: mutation {i} panicked; input: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
    eprintln!(
        "{name}: {} seeds + {mutations} mutations in {:.1?}",
        seeds.len(),
        start.elapsed()
    );
    seeds.len() + mutations
}

#[test]
fn loader_survives_seeds_and_mutations() {
    let s = seeds();
    // Every testdata/ case directory (37) contributes its files and their join.
    assert!(s.loader.len() > 100, "{} loader seeds", s.loader.len());
    let n = smoke(
        "loader",
        fuzz::loader,
        &s.loader,
        LOADER_MUTATIONS,
        8 * 1024,
    );
    assert_eq!(n, s.loader.len() + LOADER_MUTATIONS);
}

#[test]
fn nflog_survives_seeds_and_mutations() {
    let s = seeds();
    assert_eq!(s.nflog.len(), 6);
    // The seeds are what the kernel sends: the batch holds two readable packets.
    let b = nftpol::kernel::nflog::parse(&s.nflog[4]);
    assert_eq!((b.packets.len(), b.skipped), (2, 0), "{b:?}");
    smoke("nflog", fuzz::nflog, &s.nflog, NFLOG_MUTATIONS, usize::MAX);
}

#[test]
fn listing_survives_seeds_and_mutations() {
    let s = seeds();
    // The rendered listings are listings nftpol reads: each parses.
    let parsed = s
        .listing
        .iter()
        .filter(|l| nftpol::kernel::listing::parse(&String::from_utf8_lossy(l)).is_some())
        .count();
    assert!(
        parsed > 20,
        "{parsed} of {} listing seeds parse",
        s.listing.len()
    );
    smoke(
        "listing",
        fuzz::listing,
        &s.listing,
        LISTING_MUTATIONS,
        16 * 1024,
    );
}
