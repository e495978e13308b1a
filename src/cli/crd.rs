//! `nftpol crd [clusternetworkpolicies|nodeprogramstatuses]` (hidden):
//! prints a CustomResourceDefinition generated from nftpol's types, the
//! text of deploy/crd-clusternetworkpolicies.yaml or
//! deploy/manifests/04-crd-nodeprogramstatuses.yaml (tests/deploy.rs keeps
//! them equal).

use std::io::Write;

use super::args::{CrdArgs, CrdName};
use super::{Failure, Outcome};

/// Prints the CRD as YAML.
pub fn crd(a: &CrdArgs) -> Outcome {
    let text = match a.which {
        CrdName::Clusternetworkpolicies => crate::core::k8s::cnp::crd_yaml(),
        CrdName::Nodeprogramstatuses => crate::core::k8s::node_status::crd_yaml(),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::internal(format!("writing stdout: {e}")))
}
