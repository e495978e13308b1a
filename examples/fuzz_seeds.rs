//! Writes the fuzz targets' seed corpora (`nftpol::kernel::fuzz::seeds`,
//! from `testdata/` and `rulesets/`) to `DIR/<target>/seed-NNNN`; hack/fuzz.sh
//! runs it before fuzzing:
//!
//! ```text
//! cargo run --example fuzz_seeds -- fuzz/corpus-generated/seeds
//! ```
use std::path::{Path, PathBuf};

fn main() -> std::io::Result<()> {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz_seeds DIR");
        std::process::exit(2);
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = nftpol::kernel::fuzz::seeds(root)?;
    for (target, inputs) in [
        ("loader", &seeds.loader),
        ("nflog", &seeds.nflog),
        ("listing", &seeds.listing),
    ] {
        let dir = out.join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:04}")), input)?;
        }
        println!("{target}: {} seeds in {}", inputs.len(), dir.display());
    }
    Ok(())
}
