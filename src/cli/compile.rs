//! `nftpol compile`: print the ruleset for the manifests.

use std::path::PathBuf;

use clap::ValueEnum;

use super::args::{CompileArgs, Format};
use super::input::{deprecated, has_errors, load_and_compile, write_output};
use super::{Failure, Outcome};

/// Compiles the inputs and writes the ruleset to stdout or `--output-file`.
/// Invalid policies still print (they fail closed) but exit 1; the lints'
/// warnings go to stderr with the other diagnostics. `--stats` prints the
/// cost report instead (`stats.rs`).
pub fn compile(a: &CompileArgs) -> Outcome {
    let (format, file) = output(a)?;
    if a.stats {
        return super::stats::stats(a, format, file.as_deref());
    }
    let lint = a.lint.options().map_err(Failure::invalid)?;
    let out = load_and_compile(
        &a.input,
        a.drop_log.options(),
        a.new_pods.options(),
        a.revoke.revoke_established,
        Some(&lint),
    )?;
    let text = match format {
        Format::Nft => crate::core::nft::render::script(&out.ruleset),
        Format::Json => crate::core::nft::json::script(&out.ruleset),
    };
    write_output(&text, file.as_deref())?;
    if has_errors(&out.diagnostics) {
        return Err(Failure::invalid(
            "input has errors (see above): invalid policies fail closed, invalid objects are left out",
        ));
    }
    Ok(())
}

/// The format and file `compile` writes, from `-o FORMAT` and
/// `--output-file FILE`, honouring for one release the old spellings
/// `--format FORMAT` and `-o FILE` (with a warning). An `-o` value that is
/// neither a format nor looks like a file (no `.` or `/`) is a usage error,
/// so a mistyped format never silently becomes a file name.
pub fn output(a: &CompileArgs) -> Result<(Format, Option<PathBuf>), Failure> {
    let mut format = None;
    let mut file = a.output_file.clone();
    if let Some(v) = &a.output {
        match Format::from_str(v, true) {
            Ok(f) => format = Some(f),
            Err(_) if v.contains(['.', '/']) => {
                if file.is_some() {
                    return Err(Failure::invalid(format!(
                        "-o {v}: -o names the output format (nft or json), and --output-file names the file"
                    )));
                }
                deprecated(&format!(
                    "`-o FILE` is deprecated and will be removed in the next release: -o names the output format (nft or json); use --output-file {v}"
                ));
                file = Some(PathBuf::from(v));
            }
            Err(_) => {
                return Err(Failure::invalid(format!(
                    "-o {v}: unknown output format (nft or json; to write a file use --output-file FILE)"
                )));
            }
        }
    }
    if let Some(f) = a.format {
        let name = format_name(f);
        deprecated(&format!(
            "--format is deprecated and will be removed in the next release: use -o {name}"
        ));
        match format {
            Some(g) if g != f => {
                return Err(Failure::invalid(format!(
                    "--format {name} contradicts -o {}",
                    format_name(g)
                )));
            }
            _ => format = Some(f),
        }
    }
    Ok((format.unwrap_or(Format::Nft), file))
}

fn format_name(f: Format) -> String {
    f.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}
