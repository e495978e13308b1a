//! Kernel listings made comparable: `nft -j list table inet nftpol` with handles dropped,
//! element lists sorted and objects in name order (each chain's rules keep their order), so
//! tables built by different histories (a full load, a run of element deltas, a structural
//! change in stages that creates chains after the existing ones, an agent restart) compare
//! equal. Counters are zeroed or kept by parameter: the
//! agent end-to-end tests compare tables that saw different traffic, the delta tests compare
//! tables that must carry the same counters.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};

use crate::netns;

/// What to do with counter values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counters {
    /// Set every packet and byte count to 0.
    Zeroed,
    /// Leave them as listed.
    Kept,
}

/// Normalises a parsed `nft -j` listing in place: no `handle`, sorted `elem` lists, counters
/// as asked.
pub fn normalize(v: &mut Value, counters: Counters) {
    match v {
        Value::Object(m) => {
            m.remove("handle");
            if let Some(Value::Array(els)) = m.get_mut("elem") {
                els.sort_by_key(|e| e.to_string());
            }
            if counters == Counters::Zeroed
                && let Some(Value::Object(c)) = m.get_mut("counter")
            {
                for n in c.values_mut() {
                    *n = json!(0);
                }
            }
            m.values_mut().for_each(|v| normalize(v, counters));
        }
        Value::Array(a) => a.iter_mut().for_each(|v| normalize(v, counters)),
        _ => {}
    }
}

/// Parses and normalises the text of an `nft -j list ...`; panics if it is not JSON.
pub fn parse(text: &str, counters: Counters) -> Value {
    let mut v: Value = serde_json::from_str(text).expect("nft -j prints JSON");
    normalize(&mut v, counters);
    sort_objects(&mut v);
    v
}

/// Puts the listing's objects in (kind, name) order; a rule's name is its chain's, and the
/// sort is stable, so each chain's rules keep their order.
fn sort_objects(v: &mut Value) {
    if let Some(Value::Array(objs)) = v.get_mut("nftables") {
        objs.sort_by_cached_key(|o| {
            let Some((kind, body)) = o.as_object().and_then(|m| m.iter().next()) else {
                return (String::new(), String::new());
            };
            let name = body
                .get("chain")
                .filter(|_| kind == "rule")
                .or_else(|| body.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            (kind.clone(), name.to_string())
        });
    }
}

/// The normalised `inet nftpol` table of named namespace `ns`; None without a table.
pub fn table_in(ns: &str, counters: Counters) -> Option<Value> {
    let text = netns::exec(ns, &["nft", "-j", "list", "table", "inet", "nftpol"], None).ok()?;
    Some(parse(&text, counters))
}

/// The normalised `inet nftpol` table of the calling thread's namespace; None without a table.
pub fn table_here(counters: Counters) -> Option<Value> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "inet", "nftpol"])
        .output()
        .expect("nft runs");
    out.status
        .success()
        .then(|| parse(&String::from_utf8_lossy(&out.stdout), counters))
}

/// `nft list table inet nftpol` as text in the calling thread's namespace
/// (for `contains` checks); None without a table.
pub fn table_text_here() -> Option<String> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", "nftpol"])
        .output()
        .expect("nft runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Objects of `want` missing from `got` and vice versa, one per line, for failure messages.
pub fn diff(got: &Value, want: &Value) -> String {
    let lines = |v: &Value| -> BTreeSet<String> {
        v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| o.to_string())
            .collect()
    };
    let (g, w) = (lines(got), lines(want));
    let mut out = String::new();
    for l in w.difference(&g) {
        out.push_str(&format!("  missing: {l}\n"));
    }
    for l in g.difference(&w) {
        out.push_str(&format!("  extra:   {l}\n"));
    }
    out
}

/// The element lists of the revocation generation's set (`ct-generation`) and
/// stamp map (`ct-stamp`) in a listing; None for a table without them.
fn generation_elems(v: &Value) -> Option<(Value, Value)> {
    let find = |kind: &str, name: &str| {
        v["nftables"].as_array()?.iter().find_map(|o| {
            let o = o.get(kind)?;
            (o["name"] == name).then(|| o.get("elem").cloned().unwrap_or(Value::Null))
        })
    };
    Some((find("set", "ct-generation")?, find("map", "ct-stamp")?))
}

/// Makes a kernel listing comparable with a fresh compile's although the
/// agent's revocation generation has moved on (it continues from the
/// kernel's, a fresh compile starts at 1): checks that `got`'s stamp map
/// writes `got`'s own generation, then gives `got` `want`'s two element
/// lists. An error names the inconsistency; a table without revocation is
/// left as it is.
pub fn with_generation_of(got: &mut Value, want: &Value) -> Result<(), String> {
    let (Some((g_set, g_map)), Some((w_set, w_map))) =
        (generation_elems(got), generation_elems(want))
    else {
        return Ok(());
    };
    let current = g_set.get(0).cloned().unwrap_or(Value::Null);
    if g_map.get(0).and_then(|e| e.get(1)) != Some(&current) {
        return Err(format!(
            "ct-stamp {g_map} does not stamp the table's own generation {g_set}"
        ));
    }
    for o in got["nftables"].as_array_mut().into_iter().flatten() {
        if let Some(s) = o.get_mut("set").filter(|s| s["name"] == "ct-generation") {
            s["elem"] = w_set.clone();
        } else if let Some(m) = o.get_mut("map").filter(|m| m["name"] == "ct-stamp") {
            m["elem"] = w_map.clone();
        }
    }
    Ok(())
}
