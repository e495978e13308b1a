//! What [`super::State::compile_edits`] hands out: a whole ruleset, the
//! element edits of the previous one, or the names of what a partial
//! compile changed in it.

use std::sync::Arc;

use crate::core::compile::Compiled;
use crate::core::diag::Diagnostic;
use crate::core::nft::delta::{Edits, Touched};
use crate::core::nft::ruleset::Ruleset;

/// A compile's result: a new ruleset, or element edits of the previous one.
#[derive(Debug)]
pub enum Output {
    /// A full compile.
    Full(Compiled),
    /// The previous result, edited.
    Edited(Edited),
    /// The previous result, reshaped by a partial compile.
    Reshaped(Reshaped),
}

impl Output {
    /// The result as a whole: an incremental one with a copy of `current`
    /// (the state's ruleset, which it describes).
    pub fn into_compiled<'a>(self, current: impl FnOnce() -> &'a Ruleset) -> Compiled {
        let (diagnostics, enforced_pods, drop_log) = match self {
            Output::Full(c) => return c,
            Output::Edited(Edited {
                diagnostics,
                enforced_pods,
                drop_log,
                ..
            })
            | Output::Reshaped(Reshaped {
                diagnostics,
                enforced_pods,
                drop_log,
                ..
            }) => (diagnostics, enforced_pods, drop_log),
        };
        Compiled {
            ruleset: current().clone(),
            diagnostics,
            enforced_pods,
            drop_log: Arc::unwrap_or_clone(drop_log),
        }
    }
}

/// The partial path's result: [`super::State::current`] holds the new ruleset,
/// `touched` names everything in which it differs from the previous one,
/// and the rest of [`Compiled`].
#[derive(Debug)]
pub struct Reshaped {
    /// What changed, by name.
    pub touched: Touched,
    /// As [`Compiled::diagnostics`].
    pub diagnostics: Vec<Diagnostic>,
    /// As [`Compiled::enforced_pods`].
    pub enforced_pods: usize,
    /// As [`Compiled::drop_log`], shared with the compiler's state (no
    /// copy per result).
    pub drop_log: std::sync::Arc<crate::core::compile::droplog::Index>,
}

/// The incremental path's result: what turns the previous compile's
/// ruleset into this one ([`super::State::current`] holds it), and the rest of
/// [`Compiled`].
#[derive(Debug)]
pub struct Edited {
    /// The element changes.
    pub edits: Edits,
    /// As [`Compiled::diagnostics`].
    pub diagnostics: Vec<Diagnostic>,
    /// As [`Compiled::enforced_pods`].
    pub enforced_pods: usize,
    /// As [`Compiled::drop_log`], shared with the compiler's state (no
    /// copy per result).
    pub drop_log: std::sync::Arc<crate::core::compile::droplog::Index>,
}
