//! The reference evaluator: its verdict table and the testdata verdicts (both data under
//! `testdata/`), and the differential test of the compiled rulesets against it.

mod differential;
mod table;
