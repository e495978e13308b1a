//! Keeps the kernel's `inet nftpol` table equal to the latest compiled
//! ruleset, with an in-memory mirror of what the kernel holds so updates are
//! computed without listing the kernel every time.
//!
//! - Membership-only changes go in as element deltas (one transaction).
//! - Anything structural, the first sync, and every sync after a failure go
//!   in as an atomic whole-table replacement that keeps the base chains
//!   ([`render::replacement`]: what it deletes comes from the mirror, or
//!   from a listing of the kernel when the mirror is not trusted).
//! - A failed apply leaves the kernel as it was (nft transactions are all or
//!   nothing); the mirror is then distrusted until a full replacement works.
//! - `verify` lists the kernel table and compares it with the mirror (chains
//!   and their rule counts, every set and map element by value), to repair
//!   drift (someone flushed or edited the table).
//! - With revocation of established flows (the ruleset has a generation),
//!   every change advances the generation, in the same transaction: an
//!   element delta carries the generation's two element updates, a full
//!   replacement the new value. The first one continues from the generation
//!   the kernel's table holds (a restarted agent never reuses one); without
//!   a table it starts from the clock, so an uninstalled and reinstalled
//!   nftpol does not meet stamps of its previous life.

use super::listing;
use super::nft::{ApplyError, Nft, NftCli};
use crate::core::nft::delta::{
    Edits, ElementChange, Present, Touched, staged, staged_over, staged_touched,
};
use crate::core::nft::render;
use crate::core::nft::ruleset::{Generation, Ruleset, TABLE};

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
    nft: Box<dyn Nft>,
    /// What the kernel holds, when known for sure.
    mirror: Option<Ruleset>,
    /// The last generation this enforcer sent to the kernel (applied or
    /// not: a failed or killed apply may have landed, so it is never reused).
    generation: Option<Generation>,
}

impl Enforcer {
    /// An enforcer running the given `nft` binary; the first sync is a full
    /// replacement of whatever table is in the kernel.
    pub fn new(nft: impl Into<String>) -> Enforcer {
        Enforcer::with(NftCli::new(nft))
    }

    /// An enforcer over any [`Nft`] (the real binary, or a fake in tests).
    pub fn with(nft: impl Nft + 'static) -> Enforcer {
        Enforcer {
            nft: Box::new(nft),
            mirror: None,
            generation: None,
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

    /// Brings the kernel to `new` (its generation, if any, is replaced by
    /// the one the enforcer picks).
    pub fn sync(&mut self, new: &Ruleset) -> Result<Applied, ApplyError> {
        self.sync_owned(new.clone())
    }

    /// [`Enforcer::sync`], keeping `new` as the mirror without copying it
    /// (the agent's path: a copy of a node's table costs milliseconds).
    pub fn sync_owned(&mut self, mut new: Ruleset) -> Result<Applied, ApplyError> {
        let applied = self.bring(&mut new)?;
        if applied != Applied::Unchanged {
            self.mirror = Some(new);
        }
        Ok(applied)
    }

    /// Brings the kernel from the mirror to the mirror with `edits` applied
    /// (the incremental compile's element changes of the ruleset the mirror
    /// holds), without comparing the whole tables. `None`, and nothing
    /// done, when there is no mirror or the edits name a set or map it does
    /// not have: the caller then syncs the whole new ruleset.
    pub fn sync_edits(&mut self, edits: &Edits) -> Option<Result<Applied, ApplyError>> {
        let mut new = self.mirror.take()?;
        if !edits.apply(&mut new) {
            // Nothing was applied: the mirror is still what the kernel holds.
            self.mirror = Some(new);
            return None;
        }
        let old = new.generation;
        let applied = self.apply_edits(edits, old, &mut new);
        if applied.is_ok() {
            self.mirror = Some(new);
        }
        Some(applied)
    }

    /// Brings the kernel from the mirror to `new` when `touched` names
    /// everything in which they differ (a partial compile's record): the
    /// stages of [`staged_touched`], the mirror then updated by copying only
    /// what is named. `None`, and nothing done, without a mirror or when the
    /// change cannot be staged (a name changed kind): the caller then syncs
    /// the whole ruleset. A refused stage falls back to replacing the whole
    /// table with `new`.
    pub fn sync_touched(
        &mut self,
        new: &Ruleset,
        touched: &Touched,
    ) -> Option<Result<Applied, ApplyError>> {
        let mut mirror = self.mirror.take()?;
        if touched.is_empty() {
            self.mirror = Some(mirror);
            return Some(Ok(Applied::Unchanged));
        }
        let generation = new.generation.map(|_| self.next_generation());
        let Some(stages) = staged_touched(&mirror, new, touched, generation) else {
            self.mirror = Some(mirror);
            return None;
        };
        for stage in &stages {
            if self.nft.apply_stage(stage).is_err() {
                // What the kernel holds now is not known for sure.
                let mut whole = new.clone();
                let applied = self.full(&mut whole, None);
                if applied.is_ok() {
                    self.mirror = Some(whole);
                }
                return Some(applied);
            }
        }
        touched.apply_to(&mut mirror, new);
        mirror.generation = generation;
        self.mirror = Some(mirror);
        Some(Ok(Applied::Full))
    }

    /// The generation the kernel's table holds now, as far as this enforcer knows.
    pub fn generation(&self) -> Option<Generation> {
        self.mirror.as_ref().and_then(|m| m.generation)
    }

    /// Applies the difference between the mirror and `new`; the caller
    /// records `new` as the mirror unless nothing changed.
    fn bring(&mut self, new: &mut Ruleset) -> Result<Applied, ApplyError> {
        let edits = self
            .mirror
            .as_ref()
            .and_then(|old| Edits::between(old, new));
        match edits {
            Some(edits) => {
                let old = self.mirror.as_ref().and_then(|m| m.generation);
                self.apply_edits(&edits, old, new)
            }
            None => {
                let old = self.mirror.take();
                self.full(new, old.as_ref())
            }
        }
    }

    /// Sends `edits` (the element changes towards `new`) as one transaction,
    /// which also moves the generation on from `old` (when both tables have
    /// one); when the kernel refuses, replaces the whole table instead.
    fn apply_edits(
        &mut self,
        edits: &Edits,
        old: Option<Generation>,
        new: &mut Ruleset,
    ) -> Result<Applied, ApplyError> {
        if edits.is_empty() {
            return Ok(Applied::Unchanged);
        }
        let mut change = ElementChange {
            edits,
            generation: None,
        };
        if let (Some(old), Some(_)) = (old, new.generation) {
            let next = self.next_generation();
            change.generation = Some((old, next));
            new.generation = Some(next);
        }
        let (added, deleted) = edits.counts();
        match self.nft.apply_elements(&change) {
            Ok(()) => Ok(Applied::Delta { added, deleted }),
            // The mirror may be wrong (drift): fall back to a full replacement now.
            Err(_) => self.full(new, None),
        }
    }

    /// Brings the kernel from `old` (the mirror, when trusted) to `new`
    /// when the structure changed: in stages that keep every packet's walk
    /// whole (`delta::staged`); without a trusted mirror, in the same stages
    /// over the names a listing gives (`delta::staged_over`: what both have
    /// is flushed and refilled); when a stage is refused or a name changed
    /// kind, in one transaction that keeps the base chains
    /// (`render::replacement`); when the kernel cannot even be listed, by
    /// deleting and creating the table (`render::script`).
    fn full(&mut self, new: &mut Ruleset, old: Option<&Ruleset>) -> Result<Applied, ApplyError> {
        self.mirror = None;
        if new.generation.is_some() {
            new.generation = Some(self.next_generation());
        }
        if let Some(stages) = old.and_then(|o| staged(o, new)) {
            for stage in &stages {
                self.nft.apply_stage(stage)?;
            }
            return Ok(Applied::Full);
        }
        let present = old.map(Present::of).or_else(|| self.kernel_present());
        if let Some(stages) = present.as_ref().and_then(|p| staged_over(p, new)) {
            if stages
                .iter()
                .try_for_each(|s| self.nft.apply_stage(s))
                .is_ok()
            {
                return Ok(Applied::Full);
            }
            // A stage was refused (say a kept set's type changed): what the
            // kernel holds now may include what the first stage created.
            let present = self.kernel_present();
            return self.replace_in_one(new, present.as_ref());
        }
        self.replace_in_one(new, present.as_ref())
    }

    /// The whole table in one transaction: keeping the base chains when the
    /// kernel's names are known, otherwise deleting and creating the table.
    fn replace_in_one(
        &mut self,
        new: &Ruleset,
        present: Option<&Present>,
    ) -> Result<Applied, ApplyError> {
        let script = match present {
            Some(p) => render::replacement(new, p),
            None => render::script(new),
        };
        self.nft.apply(&script)?;
        Ok(Applied::Full)
    }

    /// The chains, sets and maps of the kernel's table; `None` when the
    /// kernel cannot say (no table among other reasons: then there is no
    /// old base chain to race with either).
    fn kernel_present(&self) -> Option<Present> {
        listing::present(&self.nft.list_names().ok()?)
    }

    /// The generation to send next (recorded as sent).
    fn next_generation(&mut self) -> Generation {
        let last = match self.generation {
            Some(g) => g,
            None => self.kernel_generation(),
        };
        let next = last.next();
        self.generation = Some(next);
        next
    }

    /// The generation of the table in the kernel; without one (or without
    /// a readable one), a generation from the clock.
    fn kernel_generation(&self) -> Generation {
        self.nft
            .list_generation()
            .ok()
            .and_then(|json| listing::generation(&json))
            .unwrap_or_else(|| {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                Generation::new((secs % u64::from(Generation::MAX)) as u32)
            })
    }

    /// Compares the kernel's table with the mirror: the same chains with the
    /// same number of rules, the same sets and maps with the same elements
    /// (by value). `Ok(false)` (and the mirror forgotten) when they differ.
    pub fn verify(&mut self) -> Result<bool, ApplyError> {
        self.verify_counting().map(|(same, _)| same)
    }

    /// [`Enforcer::verify`], also returning the kernel's drop counters from
    /// the same listing (empty when there is no table, or no mirror to
    /// verify against: the table is replaced next anyway).
    pub fn verify_counting(&mut self) -> Result<(bool, listing::DropCounters), ApplyError> {
        let Some(mirror) = &self.mirror else {
            return Ok((false, listing::DropCounters::new()));
        };
        let (same, drops) = match self.nft.list_table() {
            Ok(json) => {
                let (content, drops) = listing::read(&json);
                (content == Some(listing::expected(mirror)), drops)
            }
            // No table (someone deleted it) is drift.
            Err(ApplyError::Rejected { .. }) => (false, listing::DropCounters::new()),
            // Not knowing is not trusting: the next sync replaces the table.
            Err(e) => {
                self.mirror = None;
                return Err(e);
            }
        };
        if !same {
            self.mirror = None;
        }
        Ok((same, drops))
    }

    /// Deletes the table (deliberate uninstall). Missing table is not an error.
    pub fn remove_table(&mut self) -> Result<(), ApplyError> {
        self.mirror = None;
        let script = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
        self.nft.apply(&script)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::FakeNft;

    /// The upstream x/y/z case compiled, and again with one pod fewer (a delta).
    fn rulesets() -> (Ruleset, Ruleset) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let (mut objs, _) = crate::core::k8s::load_paths(&[root.join("upstream-xyz")]);
        let opts = crate::core::compile::Options::default();
        let first = crate::core::compile::compile_objects(&objs, &opts).ruleset;
        objs.pods.pop();
        let second = crate::core::compile::compile_objects(&objs, &opts).ruleset;
        (first, second)
    }

    #[test]
    fn a_failed_delta_falls_back_to_a_full_replacement() {
        let (first, second) = rulesets();
        let nft = FakeNft::new();
        let mut e = Enforcer::with(nft.clone());
        assert_eq!(e.sync(&first).unwrap(), Applied::Full);
        nft.fail_next(1);
        assert_eq!(e.sync(&second).unwrap(), Applied::Full);
        let calls = nft.calls();
        let shape: Vec<(bool, bool)> = calls.iter().map(|c| (c.is_full(), c.ok)).collect();
        assert_eq!(
            shape,
            [(true, true), (false, false), (true, true)],
            "full, failed delta, full"
        );
        let mut want = second.clone();
        want.generation = e.generation();
        assert_eq!(e.mirror(), Some(&want));
        let g = |i: usize| crate::kernel::fake::generation_in(&calls[i].script);
        assert!(
            g(0) < g(1) && g(1) < g(2),
            "every script a new generation, the failed one used up: {:?}",
            [g(0), g(1), g(2)]
        );
    }

    #[test]
    fn a_failed_full_keeps_no_mirror_so_the_next_sync_is_full() {
        let (first, second) = rulesets();
        let nft = FakeNft::new();
        let mut e = Enforcer::with(nft.clone());
        e.sync(&first).unwrap();
        nft.fail_next(2);
        assert!(
            e.sync(&second).is_err(),
            "delta and its fallback both rejected"
        );
        assert_eq!(e.mirror(), None);
        assert_eq!(e.sync(&second).unwrap(), Applied::Full);
    }

    #[test]
    fn verify_detects_drift_and_the_next_sync_repairs() {
        let (first, _) = rulesets();
        let nft = FakeNft::new();
        let mut e = Enforcer::with(nft.clone());
        e.sync(&first).unwrap();
        nft.holds(&first);
        assert!(e.verify().unwrap(), "the kernel holds what was applied");
        let mut drifted = e.mirror().unwrap().clone();
        let map = drifted
            .maps
            .values_mut()
            .find(|m| !m.elements.is_empty())
            .expect("a dispatch map with pods");
        map.elements.pop_first();
        nft.set_listing(Some(listing::render(&drifted)));
        assert!(!e.verify().unwrap(), "a missing map element is drift");
        assert_eq!(e.sync(&first).unwrap(), Applied::Full, "repaired in full");
        nft.set_listing(None);
        assert!(!e.verify().unwrap(), "a deleted table is drift");
    }

    /// The upstream-xyz testdata case as a model, compiled once through an
    /// incremental state: the model, the state, its options and the ruleset.
    fn upstream_xyz_compiled() -> (
        crate::core::model::Cluster,
        crate::core::compile::incremental::State,
        crate::core::compile::Options,
        Ruleset,
    ) {
        use crate::core::compile::incremental::{Changes, State};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let (objs, _) = crate::core::k8s::load_paths(&[root.join("upstream-xyz")]);
        let opts = crate::core::compile::Options::default();
        let (cluster, _) = crate::core::k8s::to_cluster(&objs);
        let mut state = State::default();
        let first = state
            .compile(&cluster, vec![], &Changes::default(), &opts)
            .0
            .ruleset;
        (cluster, state, opts, first)
    }

    /// `sync_edits` sends what `sync` of the edited ruleset sends and keeps
    /// the same mirror; without a mirror it does nothing; a refused edit
    /// falls back to a full replacement.
    #[test]
    fn edits_sync_as_the_delta_of_the_edited_ruleset() {
        use crate::core::compile::incremental::{Changes, Output};
        use crate::core::nft::names;
        let (mut cluster, mut state, opts, first) = upstream_xyz_compiled();
        let gone = cluster.pods.keys().next().cloned().expect("pods");
        cluster.pods.remove(&gone);
        let changes = Changes {
            pods: [gone].into(),
            ..Changes::default()
        };
        let (Output::Edited(e), _) = state.compile_edits(&cluster, vec![], &changes, &opts) else {
            panic!("a pod removed is an element change");
        };
        let second = state.current().expect("indexed").clone();
        let elements_only = |script: &str| -> Vec<String> {
            script
                .lines()
                .filter(|l| !l.contains(names::GENERATION_SET) && !l.contains(names::STAMP_MAP))
                .map(str::to_string)
                .collect()
        };
        let without_generation = |r: Option<&Ruleset>| {
            let mut r = r.cloned().expect("a mirror");
            r.generation = None;
            r
        };
        let (nft_a, nft_b) = (FakeNft::new(), FakeNft::new());
        let (mut a, mut b) = (Enforcer::with(nft_a.clone()), Enforcer::with(nft_b.clone()));
        a.sync(&first).unwrap();
        b.sync(&first).unwrap();
        let g1 = b.generation();
        let want = a.sync(&second).unwrap();
        assert!(matches!(want, Applied::Delta { .. }), "{want:?}");
        assert_eq!(b.sync_edits(&e.edits).expect("a mirror").unwrap(), want);
        let last = |n: &FakeNft| n.calls().last().expect("a call").script.clone();
        assert_eq!(elements_only(&last(&nft_b)), elements_only(&last(&nft_a)));
        assert_eq!(
            without_generation(b.mirror()),
            without_generation(a.mirror())
        );
        assert!(b.generation() > g1, "a new generation");

        assert!(
            Enforcer::with(FakeNft::new())
                .sync_edits(&e.edits)
                .is_none()
        );

        let nft_c = FakeNft::new();
        let mut c = Enforcer::with(nft_c.clone());
        c.sync(&first).unwrap();
        nft_c.fail_next(1);
        assert_eq!(c.sync_edits(&e.edits).unwrap().unwrap(), Applied::Full);
        assert_eq!(
            without_generation(c.mirror()),
            without_generation(a.mirror())
        );
    }

    /// `sync_touched` sends the stages `sync` of the reshaped ruleset sends
    /// and keeps the same mirror; without a mirror it does nothing; a
    /// refused stage falls back to a full replacement.
    #[test]
    fn a_partial_compile_syncs_as_the_stages_of_the_reshaped_ruleset() {
        use crate::core::compile::incremental::{Changes, Output};
        let (mut cluster, mut state, opts, first) = upstream_xyz_compiled();
        // A policy deleted: its chains and its pods' group chains go.
        let gone = cluster.policies.keys().next().cloned().expect("policies");
        cluster.policies.remove(&gone);
        let changes = Changes {
            policies: [gone].into(),
            ..Changes::default()
        };
        let (Output::Reshaped(r), _) = state.compile_edits(&cluster, vec![], &changes, &opts)
        else {
            panic!("a policy deleted is a partial compile");
        };
        assert!(!r.touched.chains.is_empty(), "chains come and go");
        let second = state.current().expect("indexed").clone();
        let (nft_a, nft_b) = (FakeNft::new(), FakeNft::new());
        let (mut a, mut b) = (Enforcer::with(nft_a.clone()), Enforcer::with(nft_b.clone()));
        a.sync(&first).unwrap();
        b.sync(&first).unwrap();
        assert_eq!(a.sync(&second).unwrap(), Applied::Full);
        let g1 = b.generation();
        let got = b.sync_touched(&second, &r.touched).expect("a mirror");
        assert_eq!(got.unwrap(), Applied::Full);
        // The same stages (the generations differ between the enforcers).
        let scripts = |n: &FakeNft| -> Vec<String> {
            n.calls()[1..]
                .iter()
                .map(|c| {
                    c.script
                        .lines()
                        .filter(|l| !l.contains(crate::core::nft::names::GENERATION_SET))
                        .filter(|l| !l.contains(crate::core::nft::names::STAMP_MAP))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .collect()
        };
        assert_eq!(scripts(&nft_b), scripts(&nft_a));
        let mut want = second.clone();
        want.generation = b.generation();
        assert_eq!(b.mirror(), Some(&want), "the mirror is the new ruleset");
        assert!(b.generation() > g1, "a new generation");

        assert!(
            Enforcer::with(FakeNft::new())
                .sync_touched(&second, &r.touched)
                .is_none()
        );

        let nft_c = FakeNft::new();
        let mut c = Enforcer::with(nft_c.clone());
        c.sync(&first).unwrap();
        nft_c.fail_next(1);
        assert_eq!(
            c.sync_touched(&second, &r.touched).unwrap().unwrap(),
            Applied::Full
        );
        let mut want = second.clone();
        want.generation = c.generation();
        assert_eq!(
            c.mirror(),
            Some(&want),
            "replaced in full after the refusal"
        );
    }
}
