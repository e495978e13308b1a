//! `nftpol apply` and `nftpol uninstall`: the ruleset into (or out of) the
//! current network namespace.

use std::io::Write;

use super::args::{ApplyArgs, UninstallArgs};
use super::input::{has_errors, load_and_compile};
use super::{Failure, Outcome};
use crate::kernel::apply::ApplyError;

/// Compiles the inputs and loads (or with `--check` only checks) the
/// ruleset. Nothing is applied when the input has errors.
pub fn apply(a: &ApplyArgs) -> Outcome {
    let out = load_and_compile(
        &a.input,
        a.drop_log.options(),
        a.new_pods.options(),
        a.revoke.revoke_established,
        None,
    )?;
    if has_errors(&out.diagnostics) {
        return Err(Failure::invalid(
            "not applied: fix the errors above (the kernel ruleset is unchanged)",
        ));
    }
    nft_versions_ok(&a.nft)?;
    let result = if a.check {
        let text = crate::core::nft::render::script(&out.ruleset);
        crate::kernel::apply::run_nft(&a.nft, &text, true, false)
    } else {
        // Through the enforcer: it continues the generation of the table in
        // the kernel, so flows stamped by the previous table are evaluated again.
        crate::kernel::enforcer::Enforcer::new(a.nft.clone())
            .sync(&out.ruleset)
            .map(|_| ())
    };
    match result {
        Ok(()) => {
            let s = out.ruleset.stats();
            let _ = writeln!(
                std::io::stderr(),
                "nftpol: {} table inet nftpol: {} chains, {} rules, {} sets, {} maps, {} elements",
                if a.check { "checked" } else { "loaded" },
                s.chains,
                s.rules,
                s.sets,
                s.maps,
                s.elements
            );
            Ok(())
        }
        // The kernel said no: with --check that is the answer asked for.
        Err(e @ ApplyError::Rejected { .. }) if a.check => Err(Failure::invalid(e.to_string())),
        Err(e) => Err(Failure::internal(e.to_string())),
    }
}

/// Checks `nft` and the kernel against the minimum versions; unreadable
/// versions are reported as warnings and do not stop the command.
fn nft_versions_ok(nft: &str) -> Outcome {
    let found = crate::kernel::version::check(nft).map_err(|e| Failure::internal(e.to_string()))?;
    for w in &found.warnings {
        let _ = writeln!(std::io::stderr(), "warning: {w}");
    }
    Ok(())
}

/// Removes table `inet nftpol` (idempotent).
pub fn uninstall(a: &UninstallArgs) -> Outcome {
    crate::kernel::enforcer::Enforcer::new(a.nft.clone())
        .remove_table()
        .map_err(|e| Failure::internal(e.to_string()))?;
    let _ = writeln!(std::io::stderr(), "nftpol: table inet nftpol removed");
    Ok(())
}
