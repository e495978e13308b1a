//! The reference evaluator: its verdict table and the testdata verdicts, and the
//! differential test of the compiled rulesets against it.

mod differential;
mod table;
