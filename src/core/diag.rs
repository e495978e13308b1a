//! Diagnostics: what was wrong with the input, and where.
//!
//! Core code never fails on bad input; it returns its result plus a list of
//! these. The CLI decides what they mean for the exit code.

use std::fmt;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The input is invalid; the object was rejected or fails closed.
    Error,
    /// Something was skipped or looks suspicious; output is still exact.
    Warning,
}

/// Where an object came from: a file (or `-`) and its document index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Source {
    /// Path as given on the command line, `-` for stdin, or a watch name.
    pub file: String,
    /// 1-based document index in a multi-document file.
    pub document: usize,
    /// 1-based item index inside a `kind: List` document.
    pub item: Option<usize>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {}", self.file, self.document)?;
        if let Some(i) = self.item {
            write!(f, ", item {i}")?;
        }
        f.write_str(")")
    }
}

/// One finding about the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// File and document, when known.
    pub source: Option<Source>,
    /// `Kind namespace/name`, when known.
    pub object: Option<String>,
    /// Field path such as `spec.ingress[0].from[1].ipBlock.cidr`.
    pub field: Option<String>,
    /// What is wrong, and what nftpol did about it.
    pub message: String,
}

impl Diagnostic {
    /// An error with only a message.
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            source: None,
            object: None,
            field: None,
            message: message.into(),
        }
    }

    /// A warning with only a message.
    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    /// Attaches the source location.
    pub fn at(mut self, source: &Source) -> Self {
        self.source = Some(source.clone());
        self
    }

    /// Attaches the object (`Kind ns/name`).
    pub fn on(mut self, object: impl Into<String>) -> Self {
        self.object = Some(object.into());
        self
    }

    /// Attaches the field path.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.severity {
            Severity::Error => "error: ",
            Severity::Warning => "warning: ",
        })?;
        if let Some(s) = &self.source {
            write!(f, "{s}: ")?;
        }
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        if let Some(fl) = &self.field {
            write!(f, "{fl}: ")?;
        }
        f.write_str(&self.message)
    }
}
