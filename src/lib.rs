//! nftpol: compiles Kubernetes NetworkPolicies into one nftables table.
