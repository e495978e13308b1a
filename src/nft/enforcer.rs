//! Keeps the kernel's `inet nftpol` table equal to the latest compiled
//! ruleset, with an in-memory mirror of what the kernel holds so updates are
//! computed without listing the kernel every time.
//!
//! - Membership-only changes go in as element deltas (one transaction).
//! - Anything structural, the first sync, and every sync after a failure go
//!   in as an atomic whole-table replacement.
//! - A failed apply leaves the kernel as it was (nft transactions are all or
//!   nothing); the mirror is then distrusted until a full replacement works.
//! - `verify` lists the kernel table and compares its shape with the mirror,
//!   to repair drift (someone flushed or edited the table).

use std::collections::BTreeMap;
use std::process::Command;

use super::apply::{ApplyError, run_nft};
use super::delta::{Update, diff};
use super::render;
use super::ruleset::{Ruleset, TABLE};

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The kernel already held this ruleset.
    Unchanged,
    /// Element additions/deletions.
    Delta {
        /// Elements added.
        added: usize,
        /// Elements deleted.
        deleted: usize,
    },
    /// Whole-table replacement.
    Full,
}

impl Applied {
    /// Label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Applied::Unchanged => "unchanged",
            Applied::Delta { .. } => "delta",
            Applied::Full => "full",
        }
    }
}

/// Applies rulesets to the kernel of the current network namespace.
#[derive(Debug)]
pub struct Enforcer {
    nft: String,
    /// What the kernel holds, when known for sure.
    mirror: Option<Ruleset>,
}

impl Enforcer {
    /// An enforcer running the given `nft` binary; the first sync is a full
    /// replacement of whatever table is in the kernel.
    pub fn new(nft: impl Into<String>) -> Enforcer {
        Enforcer {
            nft: nft.into(),
            mirror: None,
        }
    }

    /// The ruleset the kernel is known to hold.
    pub fn mirror(&self) -> Option<&Ruleset> {
        self.mirror.as_ref()
    }

    /// Forgets the mirror so the next sync replaces the whole table.
    pub fn invalidate(&mut self) {
        self.mirror = None;
    }

    /// Brings the kernel to `new`.
    pub fn sync(&mut self, new: &Ruleset) -> Result<Applied, ApplyError> {
        let update = match &self.mirror {
            Some(old) => diff(old, new),
            None => Update::Full,
        };
        let applied = match update {
            Update::None => return Ok(Applied::Unchanged),
            Update::Elements {
                script,
                added,
                deleted,
            } => match run_nft(&self.nft, &script, false, false) {
                Ok(()) => Applied::Delta { added, deleted },
                // The mirror may be wrong (drift): fall back to a full replacement now.
                Err(_) => self.full(new)?,
            },
            Update::Full => self.full(new)?,
        };
        self.mirror = Some(new.clone());
        Ok(applied)
    }

    fn full(&mut self, new: &Ruleset) -> Result<Applied, ApplyError> {
        self.mirror = None;
        run_nft(&self.nft, &render::script(new), false, false)?;
        Ok(Applied::Full)
    }

    /// Compares the kernel's table with the mirror: same chains with the same
    /// number of rules, same sets and maps with the same number of elements.
    /// `Ok(false)` (and the mirror forgotten) when they differ.
    pub fn verify(&mut self) -> Result<bool, ApplyError> {
        let Some(mirror) = &self.mirror else {
            return Ok(false);
        };
        let listed = Command::new(&self.nft)
            .args(["-j", "list", "table", "inet", TABLE])
            .output()
            .map_err(|source| ApplyError::Spawn {
                nft: self.nft.clone(),
                source,
            })?;
        let same = listed.status.success()
            && kernel_shape(&String::from_utf8_lossy(&listed.stdout))
                == Some(expected_shape(mirror));
        if !same {
            self.mirror = None;
        }
        Ok(same)
    }

    /// Deletes the table (deliberate uninstall). Missing table is not an error.
    pub fn remove_table(&mut self) -> Result<(), ApplyError> {
        self.mirror = None;
        let script = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
        run_nft(&self.nft, &script, false, false)
    }
}

/// Object → count: `chain NAME` → rules, `set NAME`/`map NAME` → elements.
type Shape = BTreeMap<String, usize>;

fn expected_shape(rs: &Ruleset) -> Shape {
    let mut s = Shape::new();
    for (n, c) in &rs.chains {
        s.insert(format!("chain {n}"), c.rules.len());
    }
    for (n, set) in &rs.sets {
        s.insert(format!("set {n}"), set.elements.len());
    }
    for (n, m) in &rs.maps {
        s.insert(format!("map {n}"), m.elements.len());
    }
    s
}

/// The shape of `nft -j list table` output; `None` if it cannot be read.
fn kernel_shape(json: &str) -> Option<Shape> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let mut s = Shape::new();
    for obj in v.get("nftables")?.as_array()? {
        if let Some(c) = obj.get("chain") {
            s.entry(format!("chain {}", c.get("name")?.as_str()?))
                .or_insert(0);
        } else if let Some(r) = obj.get("rule") {
            *s.entry(format!("chain {}", r.get("chain")?.as_str()?))
                .or_insert(0) += 1;
        } else if let Some(set) = obj.get("set") {
            let n = set
                .get("elem")
                .and_then(|e| e.as_array())
                .map_or(0, |e| e.len());
            s.insert(format!("set {}", set.get("name")?.as_str()?), n);
        } else if let Some(m) = obj.get("map") {
            let n = m
                .get("elem")
                .and_then(|e| e.as_array())
                .map_or(0, |e| e.len());
            s.insert(format!("map {}", m.get("name")?.as_str()?), n);
        }
    }
    Some(s)
}
