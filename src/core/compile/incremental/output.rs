//! What [`super::State::compile_edits`] hands out: a whole ruleset, the
//! element edits of the previous one, or the names of what a partial
//! compile changed in it.

use crate::core::compile::Compiled;
use crate::core::diag::Diagnostic;
use crate::core::nft::delta::{Edits, Touched};

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
    /// As [`Compiled::drop_log`].
    pub drop_log: crate::core::compile::droplog::Index,
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
    /// As [`Compiled::drop_log`].
    pub drop_log: crate::core::compile::droplog::Index,
}
