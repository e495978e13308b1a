//! Architecture invariants, checked on the source text of `src/`.
//!
//! ARCHITECTURE.md describes three bands — the pure core, kernel IO and the
//! drivers — and what each may use. This test is where those sentences are
//! enforced: a rule broken anywhere in `src/` fails it with the file, the
//! line and the rule. Each checker is also run on a small bad example below,
//! so a checker that silently stopped matching would fail too.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// One "may only appear in" rule.
struct Rule {
    /// What the rule protects, as ARCHITECTURE.md says it.
    what: &'static str,
    /// The offending token (matched on code with comments and strings removed).
    needle: fn(&str) -> bool,
    /// Path prefixes (relative to the crate root) where the token is allowed.
    allowed: &'static [&'static str],
}

fn word(line: &str, w: &str) -> bool {
    line.match_indices(w).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + w.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

const RULES: &[Rule] = &[
    Rule {
        what: "only core::k8s sees Kubernetes API types (k8s_openapi)",
        needle: |l| word(l, "k8s_openapi"),
        allowed: &["src/core/k8s/"],
    },
    Rule {
        what: "only kernel spawns processes (std::process::Command)",
        needle: |l| l.contains("process::Command") || word(l, "Command::new"),
        allowed: &["src/kernel/"],
    },
    Rule {
        what: "only kernel opens netlink sockets (netlink_sys, netlink_packet_*)",
        needle: |l| l.contains("netlink_sys") || l.contains("netlink_packet_"),
        allowed: &["src/kernel/"],
    },
    Rule {
        what: "no unsafe code (the NFLOG reader's syscalls are netlink-sys's)",
        needle: |l| word(l, "unsafe"),
        allowed: &[],
    },
    Rule {
        what: "no module opts out of #![forbid(unsafe_code)]",
        needle: |l| l.contains("unsafe_code") && !l.contains("forbid(unsafe_code)"),
        allowed: &[],
    },
    Rule {
        what: "async runtime and HTTP (tokio, hyper) only in the agent",
        needle: |l| {
            ["tokio", "hyper", "hyper_util", "async", "await"]
                .iter()
                .any(|w| word(l, w))
        },
        allowed: &["src/agent/"],
    },
    Rule {
        what: "the API client (kube) only in the agent; core::k8s::cnp and node_status derive their CRDs with it",
        needle: |l| word(l, "kube"),
        allowed: &[
            "src/agent/",
            "src/core/k8s/cnp.rs",
            "src/core/k8s/node_status.rs",
        ],
    },
    Rule {
        what: "the core reads no clock",
        needle: |l| {
            ["Instant::now", "SystemTime", "UNIX_EPOCH"]
                .iter()
                .any(|w| l.contains(w))
        },
        allowed: &["src/kernel/", "src/agent/", "src/cli/"],
    },
    Rule {
        what: "the core starts no thread and opens no socket",
        needle: |l| {
            [
                "std::thread",
                "thread::spawn",
                "std::net::TcpStream",
                "TcpListener",
                "UdpSocket",
            ]
            .iter()
            .any(|w| l.contains(w))
                || word(l, "libc")
        },
        allowed: &["src/kernel/", "src/agent/", "src/cli/"],
    },
    Rule {
        what: "the core does no file IO, except k8s::load reading the files the user named",
        needle: |l| l.contains("std::fs") || word(l, "fs::") || l.contains("io::stdin"),
        allowed: &[
            "src/kernel/",
            "src/agent/",
            "src/cli/",
            "src/core/k8s/load.rs",
        ],
    },
    Rule {
        what: "arrows point down: the core imports no kernel, agent or cli",
        needle: |l| {
            ["crate::kernel", "crate::agent", "crate::cli"]
                .iter()
                .any(|w| l.contains(w))
        },
        allowed: &["src/kernel/", "src/agent/", "src/cli/", "src/main.rs"],
    },
    Rule {
        what: "arrows point down: kernel imports no agent or cli",
        needle: |l| ["crate::agent", "crate::cli"].iter().any(|w| l.contains(w)),
        allowed: &["src/agent/", "src/cli/", "src/main.rs"],
    },
    Rule {
        what: "arrows point down: the agent imports no cli",
        needle: |l| l.contains("crate::cli"),
        allowed: &["src/cli/", "src/main.rs"],
    },
];

/// Longest file without a reason given at its top.
const MAX_LINES: usize = 600;
/// How a long file says why it is long (a line among its first ten).
const LONG_FILE_MARK: &str = "Longer than 600 lines:";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file, line by line, with comments, string and char
/// literals blanked out (so a doc comment may name `k8s_openapi` and a
/// message may say "unsafe"). `#[cfg(test)]` code is kept: tests obey the
/// bands too.
fn code_lines(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block_depth = 0usize;
    let mut in_str = false;
    let mut raw_hashes: Option<usize> = None;
    for line in src.lines() {
        let b: Vec<char> = line.chars().collect();
        let mut code = String::new();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            let next = b.get(i + 1).copied();
            if block_depth > 0 {
                if c == '*' && next == Some('/') {
                    block_depth -= 1;
                    i += 2;
                } else if c == '/' && next == Some('*') {
                    block_depth += 1;
                    i += 2;
                } else {
                    i += 1;
                }
                continue;
            }
            if let Some(h) = raw_hashes {
                if c == '"' && b[i + 1..].iter().take(h).filter(|&&x| x == '#').count() == h {
                    raw_hashes = None;
                    i += 1 + h;
                    code.push('"');
                } else {
                    i += 1;
                }
                continue;
            }
            if in_str {
                if c == '\\' {
                    i += 2;
                } else {
                    if c == '"' {
                        in_str = false;
                        code.push('"');
                    }
                    i += 1;
                }
                continue;
            }
            match (c, next) {
                ('/', Some('/')) => break,
                ('/', Some('*')) => {
                    block_depth += 1;
                    i += 2;
                }
                ('"', _) => {
                    in_str = true;
                    code.push('"');
                    i += 1;
                }
                ('r', Some('"' | '#')) if i == 0 || !b[i - 1].is_alphanumeric() => {
                    let h = b[i + 1..].iter().take_while(|&&x| x == '#').count();
                    if b.get(i + 1 + h) == Some(&'"') {
                        raw_hashes = Some(h);
                        code.push('"');
                        i += 2 + h;
                    } else {
                        code.push(c);
                        i += 1;
                    }
                }
                ('\'', _) => {
                    // A char literal ('x', '\n', '"') or a lifetime ('a).
                    if b.get(i + 2) == Some(&'\'') {
                        i += 3;
                    } else if next == Some('\\') {
                        let close = b[i + 2..].iter().position(|&x| x == '\'');
                        i += close.map_or(b.len(), |p| p + 3);
                    } else {
                        code.push(c);
                        i += 1;
                    }
                }
                _ => {
                    code.push(c);
                    i += 1;
                }
            }
        }
        out.push(code);
    }
    out
}

/// Every rule broken in one file's text, as "path:line: rule".
fn violations(rel: &str, src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in code_lines(src).iter().enumerate() {
        for rule in RULES {
            if (rule.needle)(line) && !rule.allowed.iter().any(|a| rel.starts_with(a)) {
                out.push(format!("{rel}:{}: {}: {}", n + 1, rule.what, line.trim()));
            }
        }
    }
    let lines = src.lines().count();
    if lines > MAX_LINES && !src.lines().take(10).any(|l| l.contains(LONG_FILE_MARK)) {
        out.push(format!(
            "{rel}: {lines} lines, over {MAX_LINES} without a `{LONG_FILE_MARK} <reason>` line at its top"
        ));
    }
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root())
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

#[test]
fn every_band_keeps_to_what_it_may_use() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    assert!(
        files.len() > 20,
        "found only {} files under src/",
        files.len()
    );
    let mut bad = Vec::new();
    for f in &files {
        let src = fs::read_to_string(f).unwrap();
        bad.extend(violations(&rel(f), &src));
    }
    assert!(
        bad.is_empty(),
        "architecture invariants broken:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_three_bands_are_the_crate_root() {
    let lib = fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let mods: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let want: BTreeSet<&str> = ["agent", "cli", "core", "kernel"].into();
    assert_eq!(
        mods, want,
        "src/lib.rs declares exactly the bands and the two drivers"
    );
    for attr in ["#![forbid(unsafe_code)]", "#![deny(missing_docs)]"] {
        assert!(
            code_lines(&lib).iter().any(|l| l.trim() == attr),
            "src/lib.rs must say {attr}"
        );
    }
    let main = fs::read_to_string(root().join("src/main.rs")).unwrap();
    assert!(
        code_lines(&main)
            .iter()
            .any(|l| l.trim() == "#![forbid(unsafe_code)]"),
        "src/main.rs must say #![forbid(unsafe_code)] (a crate root of its own)"
    );
}

/// Every `.rs` file under `src/` is a module some parent declares (an
/// undeclared file is dead code nobody compiles).
#[test]
fn every_source_file_is_a_declared_module() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut bad = Vec::new();
    for f in &files {
        let r = rel(f);
        if r == "src/lib.rs" || r == "src/main.rs" {
            continue;
        }
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        let dir = f.parent().unwrap();
        let (module, parent_dir) = if name == "mod" {
            (
                dir.file_name().unwrap().to_string_lossy().to_string(),
                dir.parent().unwrap(),
            )
        } else {
            (name, dir)
        };
        let parent = if parent_dir == root().join("src") {
            vec![parent_dir.join("lib.rs"), parent_dir.join("main.rs")]
        } else {
            vec![parent_dir.join("mod.rs"), parent_dir.with_extension("rs")]
        };
        let declared = parent
            .iter()
            .filter_map(|p| fs::read_to_string(p).ok())
            .any(|s| {
                code_lines(&s).iter().any(|l| {
                    let l = l.trim();
                    let l = l.strip_prefix("pub ").unwrap_or(l);
                    let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
                    l == format!("mod {module};")
                })
            });
        if !declared {
            bad.push(r);
        }
    }
    assert!(
        bad.is_empty(),
        "files under src/ no module declares: {bad:?}"
    );
}

// The checkers themselves: each must catch the breach it exists for.

#[test]
fn a_process_spawned_in_the_compiler_is_caught() {
    let src = "fn f() {\n    let _ = std::process::Command::new(\"nft\");\n}\n";
    let v = violations("src/core/compile/mod.rs", src);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].contains("src/core/compile/mod.rs:2: only kernel spawns processes"),
        "{v:?}"
    );
    assert!(violations("src/kernel/apply.rs", src).is_empty());
}

#[test]
fn a_netlink_socket_in_the_agent_is_caught() {
    let src = "use netlink_sys::Socket;\n";
    let v = violations("src/agent/worker/mod.rs", src);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("only kernel opens netlink sockets"), "{v:?}");
    assert!(violations("src/kernel/netlink/mod.rs", src).is_empty());
}

#[test]
fn a_kubernetes_type_in_the_agent_is_caught() {
    let src = "use k8s_openapi::api::core::v1::Pod;\n";
    let v = violations("src/agent/watch.rs", src);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].contains("only core::k8s sees Kubernetes API types"),
        "{v:?}"
    );
    assert!(violations("src/core/k8s/strip.rs", src).is_empty());
}

#[test]
fn comments_and_strings_do_not_count_but_code_after_them_does() {
    let src = "//! k8s_openapi is only used in core::k8s\n\
               /* unsafe { } */ let s = \"tokio::spawn Command::new\";\n\
               let c = '\"'; let r = r#\"unsafe\"#; unsafe { x() }\n";
    let v = violations("src/core/graph/mod.rs", src);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains(":3: no unsafe code"), "{v:?}");
}

#[test]
fn the_core_may_not_reach_up_or_read_the_clock() {
    let src = "use crate::kernel::apply;\nlet t = std::time::Instant::now();\n";
    let v = violations("src/core/explain/eval.rs", src);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(
        violations(
            "src/agent/worker.rs",
            "let t = std::time::Instant::now();\n"
        )
        .is_empty()
    );
}

#[test]
fn a_long_file_needs_its_reason() {
    let body = "fn f() {}\n".repeat(MAX_LINES + 1);
    assert_eq!(violations("src/core/x.rs", &body).len(), 1);
    let with = format!("//! {LONG_FILE_MARK} one table of cases.\n{body}");
    assert!(violations("src/core/x.rs", &with).is_empty());
}

/// Every benchmark in Cargo.toml is run by `hack/bench-all.sh` (the one
/// command docs/performance.md gives to reproduce its figures) and listed
/// in docs/performance.md's "Reproduce".
#[test]
fn every_benchmark_is_reproducible_by_one_command() {
    let read = |p: &str| fs::read_to_string(root().join(p)).unwrap();
    let manifest = read("Cargo.toml");
    let (script, doc) = (read("hack/bench-all.sh"), read("docs/performance.md"));
    let benches: Vec<&str> = manifest
        .split("[[bench]]")
        .skip(1)
        .filter_map(|b| {
            let line = b.lines().find(|l| l.trim_start().starts_with("name"))?;
            line.split('"').nth(1)
        })
        .collect();
    assert!(benches.len() >= 9, "benchmarks found: {benches:?}");
    // The names in `order=(…)`, the list the script runs by default.
    let order: Vec<&str> = script
        .lines()
        .find_map(|l| l.strip_prefix("order=("))
        .and_then(|l| l.strip_suffix(')'))
        .expect("hack/bench-all.sh: an order=(…) line")
        .split_whitespace()
        .collect();
    for b in benches {
        assert!(
            script.contains(&format!("[{b}]=")) && order.contains(&b),
            "hack/bench-all.sh does not run benchmark {b}"
        );
        assert!(
            doc.contains(&format!("`benches/{b}.rs`")) || doc.contains(&format!("`benches/{b}/`")),
            "docs/performance.md, \"Reproduce\", does not list benches/{b}"
        );
    }
}
