//! `nftpol crd` (hidden): prints the ClusterNetworkPolicy
//! CustomResourceDefinition generated from nftpol's types, the text of
//! deploy/crd-clusternetworkpolicies.yaml (tests/deploy.rs keeps the two
//! equal).

use std::io::Write;

use super::{Failure, Outcome};

/// Prints the CRD as YAML.
pub fn crd() -> Outcome {
    let text = crate::core::k8s::cnp::crd_yaml();
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::internal(format!("writing stdout: {e}")))
}
