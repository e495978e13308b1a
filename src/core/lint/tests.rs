//! Unit tests of the lints over small inline inputs; each lint's testdata
//! case (testdata/lint-*) is snapshotted by tests/output.

use super::*;
use crate::core::k8s::{Objects, parse_into};

fn run(yaml: &str, opts: &LintOptions) -> Vec<String> {
    let mut objs = Objects::default();
    let mut d = Vec::new();
    parse_into(yaml, "t.yaml", &mut objs, &mut d);
    assert!(d.is_empty(), "{d:?}");
    let (cluster, d) = crate::core::k8s::to_cluster(&objs);
    assert!(d.is_empty(), "{d:?}");
    let graph = SelectorGraph::build(&cluster);
    lint(&cluster, &graph, &crate::core::k8s::lint_input(&objs), opts)
        .iter()
        .map(|d| {
            assert!(!d.is_error(), "lints only warn: {d}");
            d.to_string()
        })
        .collect()
}

const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.244.1.10, podIPs: [{ip: 10.244.1.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: a, labels: {app: agent}}
spec: {nodeName: n1, hostNetwork: true, containers: [{name: c}]}
status: {podIP: 192.168.0.1, podIPs: [{ip: 192.168.0.1}]}
";

#[test]
fn host_network_only_flags_a_policy_selecting_only_host_pods() {
    let w = run(
        &format!(
            "{PODS}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: agent, namespace: a}}
spec: {{podSelector: {{matchLabels: {{app: agent}}}}, ingress: [{{}}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: all, namespace: a}}
spec: {{podSelector: {{}}, ingress: [{{}}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: nothing, namespace: a}}
spec: {{podSelector: {{matchLabels: {{app: gone}}}}, ingress: [{{}}]}}
"
        ),
        &LintOptions::default(),
    );
    assert_eq!(
        w.len(),
        1,
        "only a/agent (a/all selects web too; a/nothing selects nothing): {w:#?}"
    );
    assert!(
        w[0].contains("NetworkPolicy a/agent: spec.podSelector: [lint host-network-only]"),
        "{}",
        w[0]
    );
}

#[test]
fn ipblock_ranges_flag_pods_and_services_but_not_anywhere() {
    let policy = |cidr: &str| {
        format!(
            "{PODS}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p, namespace: a}}
spec: {{podSelector: {{}}, policyTypes: [Ingress], ingress: [{{from: [{{ipBlock: {{cidr: {cidr}}}}}]}}]}}
"
        )
    };
    let svc = LintOptions {
        service_cidrs: vec![Cidr::parse("10.96.0.0/12").unwrap()],
        limit: None,
    };
    let w = run(&policy("10.0.0.0/8"), &svc);
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(
        w[0].contains("[lint ipblock-pod-range]") && w[0].contains("a/web 10.244.1.10"),
        "{}",
        w[0]
    );
    assert!(
        w[1].contains("[lint ipblock-service-range]")
            && w[1].contains("--service-cidr 10.96.0.0/12"),
        "{}",
        w[1]
    );
    assert!(w[0].contains("spec.ingress[0].from[0].ipBlock"), "{}", w[0]);
    assert!(
        run(&policy("0.0.0.0/0"), &svc).is_empty(),
        "/0 means anywhere, pods included"
    );
    assert!(
        run(&policy("192.0.2.0/24"), &svc).is_empty(),
        "external only"
    );
}

#[test]
fn dns_lint_uses_a_stand_in_and_accepts_a_rule_to_kube_dns_pods() {
    let deny = "---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: a}
spec: {podSelector: {}, policyTypes: [Egress]}
";
    let w = run(&format!("{PODS}{deny}"), &LintOptions::default());
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].contains("NetworkPolicy a/deny: spec.policyTypes: [lint egress-without-dns]"),
        "{}",
        w[0]
    );
    assert!(
        w[0].contains("stand-in") || w[0].contains("no pod labelled"),
        "{}",
        w[0]
    );
    let dns = "---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
    ports: [{protocol: UDP, port: 53}]
";
    assert!(run(&format!("{PODS}{deny}{dns}"), &LintOptions::default()).is_empty());
    // A rule to the kube-dns ClusterIP does not count (after DNAT the packet goes to a pod).
    let clusterip = "---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.96.0.10/32}}], ports: [{protocol: UDP, port: 53}]}]
";
    let w = run(&format!("{PODS}{deny}{clusterip}"), &LintOptions::default());
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].contains("NetworkPolicy a/deny: spec.policyTypes") && w[0].contains("nor of a/dns"),
        "{}",
        w[0]
    );
}

#[test]
fn a_lint_warning_thousands_of_times_is_capped_with_a_count() {
    let mut yaml = String::new();
    for i in 0..30 {
        yaml.push_str(&format!(
            "---
apiVersion: v1
kind: Namespace
metadata: {{name: n{i}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: p, namespace: n{i}}}
spec: {{nodeName: node-1, containers: [{{name: c, image: i}}]}}
status: {{phase: Running, podIPs: [{{ip: 10.244.1.{}}}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: deny, namespace: n{i}}}
spec: {{podSelector: {{}}, policyTypes: [Egress]}}
",
            i + 10
        ));
    }
    let all = run(&yaml, &LintOptions::default());
    assert_eq!(
        all.len(),
        30,
        "one warning per policy without a limit: {all:#?}"
    );
    let capped = run(
        &yaml,
        &LintOptions {
            limit: Some(5),
            ..LintOptions::default()
        },
    );
    assert_eq!(capped.len(), 6, "{capped:#?}");
    assert_eq!(capped[..5], all[..5], "the first five, unchanged");
    assert!(
        capped[5].contains("[lint egress-without-dns] 25 more warnings of this lint not shown"),
        "{}",
        capped[5]
    );
    let exact = run(
        &yaml,
        &LintOptions {
            limit: Some(30),
            ..LintOptions::default()
        },
    );
    assert_eq!(exact, all, "no summary line when nothing is left out");
}
