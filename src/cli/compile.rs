//! `nftpol compile`: print the ruleset for the manifests.

use super::args::{CompileArgs, Format};
use super::input::{has_errors, load_and_compile, print_stdout};
use super::{Failure, Outcome};

/// Compiles the inputs and writes the ruleset to stdout or `-o`. Invalid
/// policies still print (they fail closed) but exit 1.
pub fn compile(a: &CompileArgs) -> Outcome {
    let out = load_and_compile(&a.input, a.drop_log.options())?;
    let text = match a.format {
        Format::Nft => crate::core::nft::render::script(&out.ruleset),
        Format::Json => crate::core::nft::json::script(&out.ruleset),
    };
    match &a.output {
        Some(path) => std::fs::write(path, text.as_bytes())
            .map_err(|e| Failure::internal(format!("cannot write {}: {e}", path.display())))?,
        None => print_stdout(&text)?,
    }
    if has_errors(&out.diagnostics) {
        return Err(Failure::invalid(
            "input has errors (see above): invalid policies fail closed, invalid objects are left out",
        ));
    }
    Ok(())
}
