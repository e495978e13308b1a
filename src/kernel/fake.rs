//! An in-memory [`Nft`] for unit tests of the enforcer and the agent's
//! worker: records every script, fails the next N applies on request, lists
//! whatever table the test says the kernel holds (to simulate drift), and
//! hangs on request (an `nft` stuck in a way its timeout does not catch).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::listing;
use super::nft::{ApplyError, Nft};
use crate::core::nft::ruleset::{Generation, Ruleset};

/// One `apply` the fake saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The script.
    pub script: String,
    /// Whether the fake accepted it.
    pub ok: bool,
}

impl Call {
    /// Whether the script is (a stage of) a structural change, as opposed
    /// to an element delta.
    pub fn is_full(&self) -> bool {
        self.script.contains("delete table inet")
            || self.script.contains("flush table inet")
            || self
                .script
                .starts_with(crate::core::nft::delta::STAGE_HEADER)
    }
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<Call>,
    fail_next: usize,
    listing: Option<String>,
    /// The ruleset [`FakeNft::holds`] was given: listed with the generation
    /// of the last accepted script, as a kernel that applied it would.
    held: Option<Ruleset>,
    /// Calls block while this is set (see [`FakeNft::hang`]).
    hang: bool,
    /// Calls blocked right now.
    hung: usize,
}

/// A fake `nft`. Clones share one state, so a test keeps a clone to inspect
/// and steer the one it handed to the enforcer.
#[derive(Debug, Clone, Default)]
pub struct FakeNft {
    state: Arc<Mutex<State>>,
    released: Arc<Condvar>,
}

impl FakeNft {
    /// A fake that accepts everything and lists no table.
    pub fn new() -> FakeNft {
        FakeNft::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rejects the next `n` applies (like nft rejecting a transaction).
    pub fn fail_next(&self, n: usize) {
        self.state().fail_next = n;
    }

    /// Every apply so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The scripts the fake kernel holds: the last accepted full
    /// replacement, then every delta accepted after it. A rejected script
    /// changes nothing (nft transactions are all or nothing).
    pub fn in_force(&self) -> Vec<String> {
        let mut held = Vec::new();
        for c in self.state().calls.iter().filter(|c| c.ok) {
            if c.is_full() {
                held.clear();
            }
            held.push(c.script.clone());
        }
        held
    }

    /// What `list_table` returns from now on (`None`: no table).
    pub fn set_listing(&self, json: Option<String>) {
        let mut s = self.state();
        s.listing = json;
        s.held = None;
    }

    /// Makes `list_table` show a kernel holding `rs`, with the generation of
    /// the last script accepted (if it set one; else `rs`'s).
    pub fn holds(&self, rs: &Ruleset) {
        let mut s = self.state();
        s.listing = Some(listing::render(rs));
        s.held = Some(rs.clone());
    }

    /// From now on every `apply` and `list_table` blocks until
    /// [`FakeNft::release`], then fails as [`ApplyError::TimedOut`] (as if the
    /// hung `nft` had been killed) without changing the fake kernel.
    pub fn hang(&self) {
        self.state().hang = true;
    }

    /// Ends [`FakeNft::hang`]: blocked calls return, later ones run normally.
    pub fn release(&self) {
        self.state().hang = false;
        self.released.notify_all();
    }

    /// How many calls are blocked in [`FakeNft::hang`] right now.
    pub fn hung(&self) -> usize {
        self.state().hung
    }

    /// Blocks while hanging; `Err` once released (the call was "killed").
    fn wait_if_hung<'a>(
        &'a self,
        mut s: MutexGuard<'a, State>,
    ) -> Result<MutexGuard<'a, State>, (MutexGuard<'a, State>, ApplyError)> {
        if !s.hang {
            return Ok(s);
        }
        s.hung += 1;
        while s.hang {
            s = self
                .released
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
        }
        s.hung -= 1;
        let e = ApplyError::TimedOut {
            nft: "fake nft".into(),
            after: Duration::ZERO,
        };
        Err((s, e))
    }
}

impl Nft for FakeNft {
    fn apply(&self, script: &str) -> Result<(), ApplyError> {
        let mut s = match self.wait_if_hung(self.state()) {
            Ok(s) => s,
            Err((mut s, e)) => {
                s.calls.push(Call {
                    script: script.to_string(),
                    ok: false,
                });
                return Err(e);
            }
        };
        let ok = s.fail_next == 0;
        s.fail_next = s.fail_next.saturating_sub(1);
        s.calls.push(Call {
            script: script.to_string(),
            ok,
        });
        if ok {
            Ok(())
        } else {
            Err(ApplyError::Rejected {
                stderr: "fake nft: rejected on request".into(),
            })
        }
    }

    fn check(&self, _script: &str) -> Result<(), ApplyError> {
        Ok(())
    }

    fn list_table(&self) -> Result<String, ApplyError> {
        let s = self.wait_if_hung(self.state()).map_err(|(_, e)| e)?;
        let applied = s
            .calls
            .iter()
            .rev()
            .filter(|c| c.ok)
            .find_map(|c| generation_in(&c.script));
        if let (Some(held), Some(g)) = (&s.held, applied) {
            let mut rs = held.clone();
            rs.generation = rs.generation.map(|_| g);
            return Ok(listing::render(&rs));
        }
        s.listing.clone().ok_or_else(|| ApplyError::Rejected {
            stderr: "Error: No such file or directory; did you mean table 'nftpol' in family inet?"
                .into(),
        })
    }

    fn version(&self) -> Result<String, ApplyError> {
        Ok("nftables v1.0.6 (Lester Gooch #5)\n".into())
    }
}

/// The generation a script sets: its `add element … ct-generation` (a
/// delta) or the element of its `set ct-generation` block (a full table).
pub fn generation_in(script: &str) -> Option<Generation> {
    let set = crate::core::nft::names::GENERATION_SET;
    let mut lines = script.lines();
    let line = loop {
        let l = lines.next()?;
        if l.starts_with("add element") && l.contains(&format!(" {set} ")) {
            break l;
        }
        if l.trim() == format!("set {set} {{") {
            break lines.find(|l| l.contains("elements = {"))?;
        }
    };
    let hex = line.split("0x").nth(1)?.get(..8)?;
    Generation::from_stamp(u32::from_str_radix(hex, 16).ok()?)
}
