//! Table-driven tests of the naive NetworkPolicy reference evaluator (`nftpol_testkit::oracle`),
//! plus sanity checks that every `testdata/` case loads and means what its README line says.
//! The expectations are data, loaded by `nftpol_testkit::verdicts`: the evaluator's own table
//! in `testdata/oracle-table.yaml`, a few verdicts per case in `testdata/case-verdicts.yaml`.

use std::net::IpAddr;

use nftpol_testkit::{cases, oracle, verdicts};
use oracle::{Cluster, Flow, Proto, allowed};
use serde_json::json;

/// Every row of `testdata/oracle-table.yaml`: the base world plus the row's objects, one flow.
#[test]
fn table() {
    let table = verdicts::oracle_table();
    // The table held 107 rows when it moved to testdata/, 45 more with ClusterNetworkPolicies;
    // fewer means rows were lost.
    assert!(table.rows.len() >= 152, "only {} rows", table.rows.len());
    let with_cnps = table
        .rows
        .iter()
        .filter(|row| {
            row.objects
                .iter()
                .any(|o| o["kind"] == "ClusterNetworkPolicy")
        })
        .count();
    assert!(
        with_cnps >= 45,
        "only {with_cnps} rows with ClusterNetworkPolicies"
    );
    let mut failures = Vec::new();
    for (i, row) in table.rows.iter().enumerate() {
        let mut cluster = Cluster::default();
        for doc in table.base.iter().chain(&row.objects).cloned() {
            cluster.add_document(doc).expect("valid object");
        }
        let got = allowed(&cluster, &row.flow);
        if got != row.allowed {
            failures.push(format!(
                "row {i} ({}): {:?} -> got {got}, want {}",
                row.why, row.flow, row.allowed
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn policy_validity_is_exposed() {
    let valid = verdicts::policy(
        "default",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    );
    let invalid = verdicts::policy(
        "default",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}),
    );
    let mut cluster = Cluster::default();
    cluster.add_document(valid).expect("valid");
    cluster.add_document(invalid).expect("parses");
    assert!(oracle::policy_is_valid(&cluster.policies[0]));
    assert!(!oracle::policy_is_valid(&cluster.policies[1]));
}

#[test]
fn cluster_policy_validity_is_exposed() {
    let spec = json!({
        "tier": "Admin", "priority": 10, "subject": {"namespaces": {}},
        "egress": [{"action": "Deny", "to": [{"networks": ["10.0.0.0/8"]}]}],
    });
    assert!(oracle::cnp_is_valid(&verdicts::cluster_policy(
        "ok",
        spec.clone()
    )));
    // One thing wrong at a time, each what the API server (experimental channel) refuses.
    let broken = [
        ("tier", json!("admin")),
        ("priority", json!(1001)),
        ("priority", json!(-1)),
        ("subject", json!({})),
        (
            "subject",
            json!({"namespaces": {}, "pods": {"podSelector": {}}}),
        ),
        ("subject", json!({"pods": {"namespaceSelector": {}}})),
        (
            "egress",
            json!([{"action": "Allow", "to": [{"namespaces": {}}]}]),
        ),
        ("egress", json!([{"action": "Deny", "to": []}])),
        (
            "egress",
            json!([{"action": "Deny", "to": [{"networks": ["10.0.0.0/33"]}]}]),
        ),
        (
            "egress",
            json!([{"action": "Deny", "to": [{"networks": ["10.0.0.0/8", "10.0.0.0/8"]}]}]),
        ),
        (
            "egress",
            json!([{"action": "Deny", "to": [{"namespaces": {}, "nodes": {}}]}]),
        ),
        (
            "egress",
            json!([{"action": "Deny", "to": [{"domainNames": ["localhost"]}]}]),
        ),
        (
            "egress",
            json!([{"action": "Deny", "to": [{"nodes": {}}], "protocols": [{"destinationNamedPort": "http"}]}]),
        ),
        (
            "egress",
            json!([{"action": "Deny", "to": [{"namespaces": {}}], "protocols": []}]),
        ),
        (
            "egress",
            json!([{"action": "Deny", "to": [{"namespaces": {}}], "protocols": [{"tcp": {}}]}]),
        ),
        (
            "egress",
            json!([{"action": "Deny", "to": [{"namespaces": {}}], "protocols": [{"udp": {"destinationPort": {"range": {"start": 80, "end": 80}}}}]}]),
        ),
        (
            "ingress",
            json!([{"action": "Deny", "from": [{"networks": ["10.0.0.0/8"]}]}]),
        ),
        (
            "ingress",
            json!([{"action": "Deny", "from": [{"namespaces": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]}]),
        ),
        (
            "ingress",
            json!([{"action": "Deny", "from": [{"namespaces": {}}], "protocols": [{"sctp": {"destinationPort": {"number": 0}}}]}]),
        ),
        ("unknown", json!(1)),
    ];
    for (key, value) in broken {
        let mut spec = spec.clone();
        spec[key] = value.clone();
        let policy = verdicts::cluster_policy("broken", spec);
        assert!(
            !oracle::cnp_is_valid(&policy),
            "{key}: {value} should be invalid"
        );
    }
    let mut unnamed = verdicts::cluster_policy("ok", spec);
    unnamed["metadata"]["name"] = json!("Not_A_Name");
    assert!(
        !oracle::cnp_is_valid(&unnamed),
        "metadata.name must be a DNS-1123 subdomain"
    );
}

// ---------------------------------------------------------------------------------------------
// testdata/
// ---------------------------------------------------------------------------------------------

/// Load `testdata/<case>`.
fn case(name: &str) -> Cluster {
    Cluster::load(&cases::case(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A TCP flow.
fn tcp(src: &str, dst: &str, port: u16) -> Flow {
    let ip = |s: &str| -> IpAddr { s.parse().expect("IP literal") };
    Flow {
        src: ip(src),
        dst: ip(dst),
        proto: Proto::Tcp,
        port,
    }
}

/// Every case directory loads, has 2..=9 active-looking pods and at least one policy.
#[test]
fn testdata_cases_load() {
    let readme = std::fs::read_to_string(cases::case("README.md")).expect("testdata/README.md");
    let mut count = 0;
    // Every directory but upstream/ (conformance cases in their own format, FORMAT.md).
    for dir in cases::case_dirs() {
        let name = dir
            .file_name()
            .expect("a case name")
            .to_string_lossy()
            .to_string();
        count += 1;
        let cluster = case(&name);
        assert!(
            (2..=9).contains(&cluster.pods.len()),
            "{name}: {} pods",
            cluster.pods.len()
        );
        assert!(!cluster.policies.is_empty(), "{name}: no policy");
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not described in testdata/README.md"
        );
    }
    assert!(count >= 27, "only {count} cases");
}

/// The ConfigMap and the Service of `unknown-kind` are skipped, not errors.
#[test]
fn testdata_unknown_kinds_are_skipped() {
    let (cluster, mut skipped) =
        Cluster::load_reporting(&cases::case("unknown-kind")).expect("loads");
    skipped.sort();
    assert_eq!(
        skipped,
        vec!["ConfigMap".to_string(), "Service".to_string()]
    );
    assert_eq!(cluster.pods.len(), 2);
    assert_eq!(cluster.policies.len(), 1);
}

/// `list-kind` holds the same objects as `pod-selector`: same verdict on every pod pair.
#[test]
fn testdata_list_kind_equals_pod_selector() {
    let listed = case("list-kind");
    let plain = case("pod-selector");
    assert_eq!(listed.namespaces.len(), plain.namespaces.len());
    assert_eq!(listed.pods.len(), plain.pods.len());
    assert_eq!(listed.policies.len(), plain.policies.len());
    let ips = [
        "10.244.1.10",
        "10.244.2.10",
        "10.244.1.11",
        "10.244.2.11",
        "192.0.2.1",
    ];
    for src in ips {
        for dst in ips {
            for port in [80, 5432, 8080] {
                let flow = tcp(src, dst, port);
                assert_eq!(allowed(&listed, &flow), allowed(&plain, &flow), "{flow:?}");
            }
        }
    }
}

/// Every verdict of `testdata/case-verdicts.yaml` against the oracle, so that the YAML of each
/// case means what testdata/README.md says.
#[test]
fn testdata_verdicts() {
    let expected = verdicts::case_verdicts();
    // The file held 148 verdicts when it moved to testdata/; fewer means verdicts were lost.
    assert!(expected.len() >= 148, "only {} verdicts", expected.len());
    let mut failures = Vec::new();
    for v in &expected {
        let got = allowed(&case(&v.case), &v.flow);
        if got != v.allowed {
            failures.push(format!(
                "{}: {}: {:?} got {got}, want {}",
                v.case, v.why, v.flow, v.allowed
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
