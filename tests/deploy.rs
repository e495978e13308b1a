//! `deploy/`, the Helm chart's static parts, the Containerfile and the
//! operator docs, checked against the code: every manifest is a valid
//! k8s-openapi object with no unknown field, deploy/install.yaml is exactly
//! the files of deploy/manifests/ concatenated, RBAC is exactly read-only on
//! what the agent watches, the DaemonSet's command parses with the real CLI
//! parser, its probes hit paths the agent serves on the port it listens on,
//! the chart has a value for every flag of `nftpol run`, and
//! docs/operations.md lists exactly the flags and metrics the binary has.
//! (Rendering the chart needs the real helm: tests/helm.rs.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Container, Namespace, PodSpec, ResourceQuota, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nftpol::agent::http;
use nftpol::agent::metrics::{Metrics, ObjectLabel};
use nftpol::cli::{Cli, Command, RunArgs};
use nftpol::kernel::version::{MIN_KERNEL, MIN_NFT};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn root() -> PathBuf {
    nftpol_testkit::cases::root().to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every object of deploy/, typed.
#[derive(Default)]
struct Deploy {
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    daemonsets: Vec<DaemonSet>,
    services: Vec<Service>,
    quotas: Vec<ResourceQuota>,
    crds: Vec<CustomResourceDefinition>,
}

/// Paths present in `orig` but missing or different after a typed round
/// trip: fields the type does not know (typos, wrong nesting).
fn lost_fields(orig: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(w) => lost_fields(v, w, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost_fields(v, w, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        // A CRD schema's bounds are floats in k8s-openapi (`1` comes back `1.0`).
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        _ => out.push(format!("{path} (value changed: {orig} -> {typed})")),
    }
}

/// Deserializes into `T` and fails on any field `T` would silently drop.
fn strict<T: DeserializeOwned + Serialize>(doc: &Value, what: &str) -> Result<T, String> {
    let obj: T = serde_path_to_error::deserialize(doc.clone())
        .map_err(|e| format!("{what}: {}: {}", e.path(), e.inner()))?;
    let back = serde_json::to_value(&obj).map_err(|e| format!("{what}: {e}"))?;
    let mut lost = Vec::new();
    lost_fields(doc, &back, "", &mut lost);
    if lost.is_empty() {
        Ok(obj)
    } else {
        Err(format!("{what}: unknown fields: {}", lost.join(", ")))
    }
}

fn parse_yaml(text: &str) -> Vec<Value> {
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_multiple_with_options::<Value>(text, options)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn add_doc(d: &mut Deploy, doc: &Value, what: &str) -> Result<(), String> {
    let api = doc["apiVersion"].as_str().unwrap_or("");
    let kind = doc["kind"].as_str().unwrap_or("");
    match (api, kind) {
        ("v1", "Namespace") => d.namespaces.push(strict(doc, what)?),
        ("v1", "ServiceAccount") => d.service_accounts.push(strict(doc, what)?),
        ("v1", "Service") => d.services.push(strict(doc, what)?),
        ("v1", "ResourceQuota") => d.quotas.push(strict(doc, what)?),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => d.cluster_roles.push(strict(doc, what)?),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            d.bindings.push(strict(doc, what)?)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => d.roles.push(strict(doc, what)?),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => d.role_bindings.push(strict(doc, what)?),
        ("apps/v1", "DaemonSet") => d.daemonsets.push(strict(doc, what)?),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => d.crds.push(strict(doc, what)?),
        _ => return Err(format!("{what}: unexpected {api} {kind}")),
    }
    Ok(())
}

/// The entries of a directory of the repository, sorted.
fn entries(rel: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .map(|e| e.expect("readable entry").path())
        .collect();
    files.sort();
    files
}

/// What `kubectl apply -f deploy/` reads: the files directly in deploy/
/// (install.yaml and the CRD; kubectl skips subdirectories without -R).
fn manifest_files() -> Vec<PathBuf> {
    entries("deploy")
        .into_iter()
        .filter(|p| !p.is_dir())
        .collect()
}

/// The sources of deploy/install.yaml, in name order.
const SOURCES: &str = "deploy/manifests";

/// deploy/install.yaml as generated from deploy/manifests/.
fn install_yaml_from_sources() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut out = format!(
        "# nftpol {version} in one file: `kubectl apply -f install.yaml` installs the
# Namespace, a ResourceQuota, the RBAC, the DaemonSet, the metrics Service and
# the NodeProgramStatus CRD (each agent's programmed status).
# The ClusterNetworkPolicy CRD, for clusters without the upstream one, is
# apart: deploy/crd-clusternetworkpolicies.yaml. The agent's image is the one
# `image:` line below (docs/operations.md). Generated from the files of
# deploy/manifests/ in name order; do not edit by hand: edit those, then run
# `UPDATE_INSTALL_YAML=1 cargo test --test deploy install_yaml`.
"
    );
    for f in entries(SOURCES) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.ends_with('\n'), "{SOURCES}/{name} ends with a newline");
        out.push_str(&format!("---\n# Source: {SOURCES}/{name}\n{text}"));
    }
    out
}

fn load() -> Deploy {
    let mut d = Deploy::default();
    let mut errors = Vec::new();
    for f in manifest_files() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for (i, doc) in parse_yaml(&std::fs::read_to_string(&f).unwrap())
            .iter()
            .enumerate()
        {
            if let Err(e) = add_doc(&mut d, doc, &format!("deploy/{name} (document {})", i + 1)) {
                errors.push(e);
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    d
}

fn one<'a, T>(v: &'a [T], what: &str) -> &'a T {
    assert_eq!(v.len(), 1, "deploy/ must hold exactly one {what}");
    &v[0]
}

fn pod_spec(ds: &DaemonSet) -> &PodSpec {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("DaemonSet spec.template.spec")
}

fn container(ds: &DaemonSet) -> &Container {
    let spec = pod_spec(ds);
    assert_eq!(spec.containers.len(), 1, "one container: the agent");
    assert!(spec.init_containers.is_none(), "no init containers");
    &spec.containers[0]
}

/// The container's command line parsed by the agent's own parser. NODE_NAME
/// comes from the environment in the pod; here it is passed as `--node`
/// (a manifest that also sets `--node` fails: clap rejects the repeat).
fn run_args(c: &Container) -> RunArgs {
    let mut argv: Vec<String> = c.command.clone().expect("command set");
    argv.extend(c.args.clone().unwrap_or_default());
    argv.extend(["--node".to_string(), "node-from-downward-api".to_string()]);
    match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Command::Run(a),
        }) => a,
        Ok(other) => panic!("{argv:?} is not `nftpol run`: {other:?}"),
        Err(e) => panic!("{argv:?} does not parse with the real CLI:\n{e}"),
    }
}

/// The container port a probe or Service port refers to.
fn resolve_port(c: &Container, p: &IntOrString) -> i32 {
    let ports = c.ports.clone().unwrap_or_default();
    match p {
        IntOrString::Int(n) => {
            assert!(
                ports.iter().any(|cp| cp.container_port == *n),
                "port {n} is not a container port"
            );
            *n
        }
        IntOrString::String(name) => {
            ports
                .iter()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("no container port named {name}"))
                .container_port
        }
    }
}

#[test]
fn every_manifest_is_a_typed_object_without_unknown_fields() {
    let d = load();
    one(&d.namespaces, "Namespace");
    one(&d.service_accounts, "ServiceAccount");
    one(&d.cluster_roles, "ClusterRole");
    one(&d.bindings, "ClusterRoleBinding");
    one(&d.daemonsets, "DaemonSet");
    one(&d.services, "Service");
    one(&d.quotas, "ResourceQuota");
    one(&d.roles, "Role");
    one(&d.role_bindings, "RoleBinding");
    assert_eq!(
        d.crds.len(),
        2,
        "the ClusterNetworkPolicy and NodeProgramStatus CRDs"
    );
}

/// deploy/crd-clusternetworkpolicies.yaml is exactly what `nftpol crd`
/// generates from the types (tests/validity.rs proves that CRD validates
/// as upstream's does); regenerate with
/// `cargo run -q -- crd > deploy/crd-clusternetworkpolicies.yaml`.
#[test]
fn the_crd_is_the_one_the_types_generate() {
    let file = read("deploy/crd-clusternetworkpolicies.yaml");
    let generated = nftpol::core::k8s::cnp::crd_yaml();
    assert!(
        file == generated,
        "deploy/crd-clusternetworkpolicies.yaml has drifted from the types; regenerate it with `cargo run -q -- crd > deploy/crd-clusternetworkpolicies.yaml`"
    );
    let file = read("deploy/manifests/04-crd-nodeprogramstatuses.yaml");
    assert!(
        file == nftpol::core::k8s::node_status::crd_yaml(),
        "deploy/manifests/04-crd-nodeprogramstatuses.yaml has drifted from the types; regenerate it with `cargo run -q -- crd nodeprogramstatuses > deploy/manifests/04-crd-nodeprogramstatuses.yaml`"
    );
    let d = load();
    let scopes: BTreeMap<String, String> = d
        .crds
        .iter()
        .map(|c| {
            (
                c.metadata.name.clone().unwrap_or_default(),
                c.spec.scope.clone(),
            )
        })
        .collect();
    assert_eq!(
        scopes,
        BTreeMap::from([
            (
                "clusternetworkpolicies.policy.networking.k8s.io".to_string(),
                "Cluster".to_string()
            ),
            ("nodeprogramstatuses.nftpol.io".into(), "Namespaced".into()),
        ])
    );
}

#[test]
fn the_strict_reader_catches_a_typo() {
    let mut doc = parse_yaml(&read("deploy/manifests/02-daemonset.yaml")).remove(0);
    doc["spec"]["template"]["spec"]["hostNetwrok"] = Value::Bool(true);
    let e = strict::<DaemonSet>(&doc, "typo").unwrap_err();
    assert!(e.contains(".spec.template.spec.hostNetwrok"), "{e}");
    let mut doc = parse_yaml(&read("deploy/manifests/02-daemonset.yaml")).remove(0);
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] =
        Value::String("NET_ADMIN".into());
    assert!(strict::<DaemonSet>(&doc, "wrong type").is_err());
}

#[test]
fn kubectl_apply_f_deploy_reads_only_manifests() {
    // `kubectl apply -f deploy/` reads every .yaml/.yml/.json file of the
    // directory (not subdirectories: deploy/manifests/ is skipped, its
    // objects are in install.yaml); a kustomization.yaml there makes it
    // fail ("no matches for kind Kustomization"), so there is none.
    let dirs: Vec<PathBuf> = entries("deploy")
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        dirs,
        vec![root().join(SOURCES)],
        "one subdirectory: the sources"
    );
    let names: Vec<String> = manifest_files()
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["crd-clusternetworkpolicies.yaml", "install.yaml"]);
    for f in manifest_files().into_iter().chain(entries(SOURCES)) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            f.is_file(),
            "deploy/{name}: only files (kubectl skips directories)"
        );
        assert!(
            name.ends_with(".yaml"),
            "deploy/{name}: every file is a manifest"
        );
        assert!(
            !name.starts_with("kustomization"),
            "deploy/{name} breaks `kubectl apply -f deploy/`"
        );
        for (i, doc) in parse_yaml(&std::fs::read_to_string(&f).unwrap())
            .iter()
            .enumerate()
        {
            assert!(
                doc["apiVersion"].is_string() && doc["kind"].is_string(),
                "deploy/{name} document {}: apiVersion and kind",
                i + 1
            );
        }
    }
    // The Namespace is created before the objects in it (documents apply
    // in order; the sources are concatenated in name order).
    assert!(entries(SOURCES)[0].ends_with("00-namespace.yaml"));
    let first = parse_yaml(&read("deploy/install.yaml")).remove(0);
    assert_eq!(first["kind"], "Namespace");
}

/// deploy/install.yaml is the release's one-file install: exactly the files
/// of deploy/manifests/ in name order, each after `---` and a `# Source:`
/// line, under a header; regenerate with
/// `UPDATE_INSTALL_YAML=1 cargo test --test deploy install_yaml`.
#[test]
fn install_yaml_is_the_manifests_concatenated() {
    let want = install_yaml_from_sources();
    let path = root().join("deploy/install.yaml");
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    if got != want && std::env::var_os("UPDATE_INSTALL_YAML").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    assert!(
        got == want,
        "deploy/install.yaml has drifted from deploy/manifests/; regenerate it with \
         `UPDATE_INSTALL_YAML=1 cargo test --test deploy install_yaml`"
    );
    // The same objects, by a second route: the sources' documents, in order.
    let mut from_sources = Vec::new();
    for f in entries(SOURCES) {
        from_sources.extend(parse_yaml(&std::fs::read_to_string(&f).unwrap()));
    }
    assert_eq!(parse_yaml(&got), from_sources);
}

/// The image is named in one place: one `image:` line, the crate's version,
/// which the documented `sed` replaces for a registry (docs/operations.md).
#[test]
fn install_yaml_names_the_image_once() {
    let text = read("deploy/install.yaml");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("image:"))
        .collect();
    let want = format!("image: nftpol:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].trim(), want);
    let ops = read("docs/operations.md");
    let sed = format!("s|{want}|image: $IMAGE|");
    assert!(
        ops.contains(&sed),
        "docs/operations.md shows `sed '{sed}'` for a registry's image"
    );
}

#[test]
fn rbac_is_read_only_on_exactly_what_the_agent_watches() {
    let d = load();
    let role = one(&d.cluster_roles, "ClusterRole");
    assert!(role.aggregation_rule.is_none(), "no aggregation");
    let mut granted = BTreeSet::new();
    for r in role.rules.as_deref().unwrap_or_default() {
        assert!(r.resource_names.is_none(), "no resourceNames");
        assert!(r.non_resource_urls.is_none(), "no nonResourceURLs");
        for g in r.api_groups.as_deref().unwrap_or_default() {
            for res in r.resources.as_deref().unwrap_or_default() {
                for v in &r.verbs {
                    granted.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    let mut want = BTreeSet::new();
    for (g, res) in [
        ("", "pods"),
        ("", "namespaces"),
        ("networking.k8s.io", "networkpolicies"),
        ("", "nodes"),
        ("policy.networking.k8s.io", "clusternetworkpolicies"),
    ] {
        for v in ["list", "watch"] {
            want.insert((g.to_string(), res.to_string(), v.to_string()));
        }
    }
    assert_eq!(granted, want, "exactly list/watch on the five kinds");

    // The one write: NodeProgramStatus objects, in the agent's namespace.
    let ns = one(&d.namespaces, "Namespace").metadata.name.clone();
    let status_role = one(&d.roles, "Role");
    assert_eq!(status_role.metadata.namespace, ns);
    let rules = status_role.rules.as_deref().unwrap_or_default();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].api_groups.as_deref(),
        Some(&["nftpol.io".to_string()][..])
    );
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["nodeprogramstatuses".to_string()][..])
    );
    assert_eq!(rules[0].verbs, ["create", "patch"]);
    let rb = one(&d.role_bindings, "RoleBinding");
    assert_eq!(rb.metadata.namespace, ns);
    assert_eq!(rb.role_ref.kind, "Role");
    assert_eq!(Some(&rb.role_ref.name), status_role.metadata.name.as_ref());
    let rb_subjects = rb.subjects.as_deref().unwrap_or_default();
    assert_eq!(rb_subjects.len(), 1, "bound to the agent only");
    assert_eq!(
        Some(&rb_subjects[0].name),
        one(&d.service_accounts, "ServiceAccount")
            .metadata
            .name
            .as_ref()
    );

    let sa = one(&d.service_accounts, "ServiceAccount");
    let ns = one(&d.namespaces, "Namespace").metadata.name.clone();
    assert_eq!(sa.metadata.namespace, ns);
    let b = one(&d.bindings, "ClusterRoleBinding");
    assert_eq!(b.role_ref.kind, "ClusterRole");
    assert_eq!(b.role_ref.api_group, "rbac.authorization.k8s.io");
    assert_eq!(Some(&b.role_ref.name), role.metadata.name.as_ref());
    let subjects = b.subjects.as_deref().unwrap_or_default();
    assert_eq!(subjects.len(), 1, "bound to the agent only");
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), sa.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace, ns);
    let ds = one(&d.daemonsets, "DaemonSet");
    assert_eq!(pod_spec(ds).service_account_name, sa.metadata.name);
    assert_eq!(ds.metadata.namespace, ns);
    assert_eq!(one(&d.services, "Service").metadata.namespace, ns);
}

#[test]
fn the_daemonset_runs_on_every_node_with_only_net_admin() {
    let d = load();
    let ds = one(&d.daemonsets, "DaemonSet");
    let dspec = ds.spec.as_ref().unwrap();
    let spec = pod_spec(ds);
    assert_eq!(spec.host_network, Some(true), "hostNetwork");
    assert_ne!(spec.host_pid, Some(true), "no hostPID");
    assert_ne!(spec.host_ipc, Some(true), "no hostIPC");
    assert!(spec.volumes.is_none(), "no host paths or other volumes");
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    // Every Linux node: nft does not exist elsewhere.
    assert_eq!(
        spec.node_selector,
        Some(BTreeMap::from([(
            "kubernetes.io/os".to_string(),
            "linux".to_string()
        )])),
        "nodeSelector kubernetes.io/os: linux, nothing else"
    );
    assert!(spec.affinity.is_none(), "no affinity narrows the nodes");
    // Clusters that limit critical priority classes by quota admit the
    // agent only with a quota in its namespace scoped to that class.
    let q = one(&d.quotas, "ResourceQuota");
    assert_eq!(q.metadata.namespace, ds.metadata.namespace);
    let qspec = q.spec.as_ref().expect("quota spec");
    let scoped = qspec
        .scope_selector
        .as_ref()
        .map(|s| s.match_expressions.clone().unwrap_or_default())
        .unwrap_or_default();
    assert!(
        scoped.iter().any(|e| e.scope_name == "PriorityClass"
            && e.operator == "In"
            && e.values
                .iter()
                .flatten()
                .any(|v| v == "system-node-critical")),
        "quota scoped to system-node-critical"
    );
    assert!(
        qspec.hard.as_ref().is_some_and(|h| h.contains_key("pods")),
        "the quota only counts pods"
    );

    // Kubernetes' toleration matching (k8s.io/api core/v1 ToleratesTaint).
    let tolerates = |key: &str, effect: &str| {
        spec.tolerations.iter().flatten().any(|t| {
            let effect_ok = t
                .effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == effect);
            let key_ok = match t.operator.as_deref() {
                Some("Exists") => t.key.as_deref().is_none_or(|k| k.is_empty() || k == key),
                _ => t.key.as_deref() == Some(key) && t.value.as_deref().unwrap_or("").is_empty(),
            };
            effect_ok && key_ok && t.toleration_seconds.is_none()
        })
    };
    for (key, effect) in [
        ("node-role.kubernetes.io/control-plane", "NoSchedule"),
        ("node-role.kubernetes.io/master", "NoSchedule"),
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/network-unavailable", "NoSchedule"),
        ("example.com/dedicated", "NoExecute"),
    ] {
        assert!(tolerates(key, effect), "must tolerate {key}:{effect}");
    }

    let up = dspec.update_strategy.as_ref().expect("updateStrategy");
    assert_eq!(up.type_.as_deref(), Some("RollingUpdate"));
    let mu = up
        .rolling_update
        .as_ref()
        .and_then(|r| r.max_unavailable.clone());
    assert!(
        matches!(&mu, Some(IntOrString::Int(1)))
            || matches!(&mu, Some(IntOrString::String(s)) if s == "1"),
        "maxUnavailable 1, got {mu:?}"
    );
    let selector = dspec.selector.match_labels.clone().unwrap_or_default();
    let labels = dspec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    assert!(!selector.is_empty());
    assert!(
        selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "selector matches the template"
    );

    let c = container(ds);
    let sc = c.security_context.as_ref().expect("securityContext");
    assert_eq!(sc.privileged, Some(false), "not privileged");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.add.as_deref(), Some(&["NET_ADMIN".to_string()][..]));
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));

    let env = c.env.as_deref().unwrap_or_default();
    let node = env
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .expect("NODE_NAME env");
    assert!(node.value.is_none());
    let field = node
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("NODE_NAME from the downward API");
    assert_eq!(field.field_path, "spec.nodeName");
    // ... and that is where the agent reads its node name from.
    let run = Cli::command();
    let node_arg = run
        .find_subcommand("run")
        .unwrap()
        .get_arguments()
        .find(|a| a.get_id() == "node")
        .expect("run --node");
    assert_eq!(
        node_arg.get_env().and_then(|e| e.to_str()),
        Some("NODE_NAME")
    );

    let res = c.resources.as_ref().expect("resources");
    for (what, m) in [("requests", &res.requests), ("limits", &res.limits)] {
        let m = m.clone().unwrap_or_default();
        for r in ["cpu", "memory"] {
            assert!(m.contains_key(r), "resources.{what}.{r}");
        }
    }
}

#[test]
fn the_command_probes_and_ports_match_the_binary() {
    let d = load();
    let ds = one(&d.daemonsets, "DaemonSet");
    let c = container(ds);
    let args = run_args(c);
    assert!(
        args.listen.ip().is_unspecified(),
        "kubelet probes a hostNetwork pod on the node's address: listen on all of them, not {}",
        args.listen
    );
    let port = i32::from(args.listen.port());

    for (probe, path) in [
        (&c.liveness_probe, http::HEALTHZ),
        (&c.readiness_probe, http::READYZ),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("an httpGet probe on {path}"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert!(matches!(get.scheme.as_deref(), None | Some("HTTP")));
        assert_eq!(
            resolve_port(c, &get.port),
            port,
            "probe port = --listen port"
        );
    }
    let metrics = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("a port named metrics");
    assert_eq!(metrics.container_port, port);

    let svc = one(&d.services, "Service");
    let sspec = svc.spec.as_ref().unwrap();
    let labels = ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let sel = sspec.selector.clone().unwrap_or_default();
    assert!(!sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    for sp in sspec.ports.iter().flatten() {
        let target = sp.target_port.clone().unwrap_or(IntOrString::Int(sp.port));
        assert_eq!(
            resolve_port(c, &target),
            port,
            "Service targets the metrics port"
        );
    }

    // Prometheus annotations on the pods and on the Service.
    let pod_ann = ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    let svc_ann = svc.metadata.annotations.clone().unwrap_or_default();
    for ann in [&pod_ann, &svc_ann] {
        let get = |k: &str| ann.get(k).map(String::as_str);
        assert_eq!(get("prometheus.io/scrape"), Some("true"));
        assert_eq!(get("prometheus.io/port"), Some(port.to_string().as_str()));
        assert_eq!(get("prometheus.io/path"), Some(http::METRICS));
    }
}

#[test]
fn the_image_ships_what_the_command_runs() {
    let d = load();
    let c = container(one(&d.daemonsets, "DaemonSet"));
    let args = run_args(c);
    let file = read("Containerfile");
    let bin = &c.command.as_ref().unwrap()[0];
    assert!(
        file.lines().any(
            |l| l.starts_with("COPY --from=build /src/target/release/nftpol ")
                && l.ends_with(&format!(" {bin}"))
        ),
        "the Containerfile installs the binary at {bin}"
    );
    assert!(
        file.contains(&format!("ENTRYPOINT [\"{bin}\"]")),
        "ENTRYPOINT is {bin}"
    );
    // Debian's nftables package installs /usr/sbin/nft.
    assert_eq!(args.nft, "/usr/sbin/nft");
    assert!(
        file.lines()
            .any(|l| l.contains("apt-get install") && l.contains(" nftables")),
        "the image installs Debian's nftables package"
    );
    assert!(file.contains("cargo build --release --locked --bin nftpol"));
    // The build image's Rust is the crate's declared minimum (rust-version).
    let msrv = env!("CARGO_PKG_RUST_VERSION");
    assert!(
        file.contains(&format!("FROM docker.io/library/rust:{msrv}-")),
        "the build stage uses rust:{msrv}"
    );
    // The manifest's image tag is the crate's version.
    let image = c.image.as_deref().expect("image");
    assert!(
        image.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))),
        "image {image} is tagged with the crate version {}",
        env!("CARGO_PKG_VERSION")
    );
    assert!(file.contains(&format!("-t nftpol:{}", env!("CARGO_PKG_VERSION"))));
}

/// Every `--flag` token of a text.
fn flags_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let before = text[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '-') {
            continue;
        }
        let rest = &text[i + 2..];
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(rest.len());
        if end > 0 && rest.as_bytes()[0].is_ascii_lowercase() {
            out.insert(format!("--{}", &rest[..end]));
        }
    }
    out
}

/// Rows of the markdown table whose first cell starts with `` `prefix``.
fn rows<'a>(doc: &'a str, prefix: &str) -> Vec<&'a str> {
    doc.lines()
        .filter(|l| l.starts_with(&format!("| `{prefix}")))
        .collect()
}

#[test]
fn operations_md_lists_exactly_the_flags_of_nftpol_run() {
    let doc = read("docs/operations.md");
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("run subcommand");
    let mut documented = BTreeSet::new();
    for row in rows(&doc, "--") {
        let flag = flags_in(row).into_iter().next().expect("a flag in the row");
        documented.insert(flag);
    }
    let mut actual = BTreeSet::new();
    for a in run.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let flag = format!("--{long}");
        actual.insert(flag.clone());
        let row = rows(&doc, &flag)
            .into_iter()
            .find(|r| flags_in(r).iter().next() == Some(&flag))
            .unwrap_or_else(|| panic!("docs/operations.md: no table row for `nftpol run {flag}`"));
        for d in a.get_default_values() {
            let d = d.to_string_lossy();
            assert!(
                row.contains(&format!("`{d}`")),
                "docs/operations.md: row of {flag} must give its default `{d}`: {row}"
            );
        }
        if let Some(env) = a.get_env() {
            let env = env.to_string_lossy();
            assert!(
                row.contains(&format!("`{env}`")),
                "docs/operations.md: row of {flag} must name its variable `{env}`: {row}"
            );
        }
    }
    assert_eq!(
        documented, actual,
        "docs/operations.md flag table vs `nftpol run` flags"
    );

    // Any other --flag the document mentions exists on some subcommand, or
    // belongs to another tool the document shows.
    let mut known: BTreeSet<String> = BTreeSet::new();
    for sub in cli.get_subcommands() {
        for a in sub.get_arguments() {
            if let Some(l) = a.get_long() {
                known.insert(format!("--{l}"));
            }
        }
    }
    known.insert("--version".into());
    known.insert("--help".into());
    let other_tools = [
        "--image",
        "--profile",
        "--field-selector",
        "--tail",
        "--bench",
        "--test",
        // kubectl and helm, in the install and upgrade sections
        "--dry-run",
        "--validate",
        "--namespace",
        "--create-namespace",
        "--set",
        "--strict",
        "--skip-crds",
        "--take-ownership",
        "--force-conflicts",
        "--install",
        "--reuse-values",
        "--reset-then-reuse-values",
        // podman/docker build, in the image section
        "--build-arg",
        "--short", // git rev-parse --short=12
    ];
    for f in flags_in(&doc) {
        assert!(
            known.contains(&f) || other_tools.contains(&f.as_str()),
            "docs/operations.md mentions {f}, which no nftpol subcommand has"
        );
    }
}

#[test]
fn operations_md_lists_exactly_the_exported_metrics() {
    let doc = read("docs/operations.md");
    let m = Metrics::new();
    // A family without any label value yet is not encoded at all; give the
    // one that only fills in after the first apply its values, as an apply does.
    for object in ["sets", "maps", "chains", "rules", "elements"] {
        m.ruleset_objects
            .get_or_create(&ObjectLabel {
                object: object.into(),
            })
            .set(0);
    }
    let encoded = m.encode();
    // What the registry really exports: `# TYPE name type`.
    let mut exported = BTreeMap::new();
    for l in encoded.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, ty) = (it.next().unwrap(), it.next().unwrap());
            let sample = if ty == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            exported.insert(sample, ty.to_string());
        }
    }
    let names: BTreeSet<String> = Metrics::NAMES.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        names,
        exported.keys().cloned().collect(),
        "Metrics::NAMES vs what a registry exports (a labelled family only appears \
         once it has a label value: create its values in Metrics::new(), or here)"
    );
    // Label keys seen in samples (families with no sample yet show none).
    let mut labels: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for l in encoded.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = l.split_once('{') else {
            continue;
        };
        let base = Metrics::NAMES
            .iter()
            .find(|n| name == **n || name.strip_prefix(**n).is_some_and(|s| s.starts_with('_')))
            .unwrap_or_else(|| panic!("sample {name} of no listed metric"));
        for kv in rest.split('}').next().unwrap().split(',') {
            let key = kv.split('=').next().unwrap();
            if key != "le" {
                labels.entry(base).or_default().insert(key.to_string());
            }
        }
    }

    for (name, ty) in &exported {
        let row = rows(&doc, name)
            .into_iter()
            .find(|r| r.starts_with(&format!("| `{name}`")))
            .unwrap_or_else(|| panic!("docs/operations.md: no table row for metric {name}"));
        assert!(
            row.contains(ty.as_str()),
            "docs/operations.md: {name} is a {ty}: {row}"
        );
        for k in labels.get(name.as_str()).into_iter().flatten() {
            assert!(
                row.contains(&format!("`{k}`")),
                "docs/operations.md: {name} has label `{k}`: {row}"
            );
        }
    }
    // Every nftpol_* name in the document is a real metric (or one of a
    // histogram's series).
    for (i, _) in doc.match_indices("nftpol_") {
        let rest = &doc[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| word.strip_suffix(s))
            .filter(|b| exported.get(*b).is_some_and(|t| t == "histogram"))
            .unwrap_or(word);
        assert!(
            names.contains(base),
            "docs/operations.md mentions {word}, which nftpol does not export"
        );
    }
}

#[test]
fn operations_md_names_the_endpoints_and_compatibility_md_the_minimums() {
    let ops = read("docs/operations.md");
    for p in http::PATHS {
        assert!(ops.contains(&format!("`{p}`")), "docs/operations.md: {p}");
    }
    let compat = read("docs/compatibility.md");
    assert!(
        compat.contains(&format!("nft {MIN_NFT}")),
        "docs/compatibility.md states the nft minimum {MIN_NFT}"
    );
    let k = format!("Linux {}.{}", MIN_KERNEL.major, MIN_KERNEL.minor);
    assert!(compat.contains(&k), "docs/compatibility.md states {k}");
    let readme = read("README.md");
    assert!(readme.contains("kubectl apply -f deploy/install.yaml"));
    assert!(readme.contains("helm install nftpol charts/nftpol"));
    assert!(readme.contains("docs/operations.md"));
}

#[test]
fn the_build_context_keeps_what_cargo_needs() {
    // Cargo.toml names the workspace member testkit/ and the benches; the
    // release build fails without them.
    let ignore = read(".dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for needed in ["src", "Cargo.toml", "Cargo.lock", "testkit", "benches"] {
        assert!(root().join(needed).exists(), "{needed}");
        assert!(
            !ignored.contains(&needed),
            ".dockerignore drops {needed}, which the build needs"
        );
    }
    assert!(
        ignored.contains(&"target"),
        "target/ stays out of the context"
    );
}

/// Runs `script` with `sh -ec` in a fresh network namespace.
fn in_fresh_netns(script: &str) -> std::process::Output {
    nftpol_testkit::netns::sh_in_fresh_netns(
        script,
        &[("NFTPOL", env!("CARGO_BIN_EXE_nftpol"))],
        &root(),
    )
}

#[test]
fn the_granted_capabilities_are_enough_for_nft_and_needed() {
    // The container's capability set, applied with setpriv to the real
    // binary in a fresh network namespace: every kernel operation the agent
    // makes (version check, whole-table load, JSON listing for drift checks,
    // element update, removal) must work with exactly these capabilities,
    // and fail without them.
    let d = load();
    let c = container(one(&d.daemonsets, "DaemonSet"));
    let args = run_args(c);
    let sc = c.security_context.as_ref().unwrap();
    let caps: Vec<String> = sc
        .capabilities
        .as_ref()
        .and_then(|c| c.add.clone())
        .unwrap_or_default()
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect();
    let nft = if Path::new(&args.nft).exists() {
        args.nft.clone()
    } else {
        "nft".to_string()
    };
    let nnp = if sc.allow_privilege_escalation == Some(false) {
        "--no-new-privs"
    } else {
        ""
    };
    let limited =
        |bounding: &str| format!("setpriv --bounding-set=-all{bounding} --inh-caps=-all {nnp} --");
    let granted = limited(&format!(",{}", caps.join(",")));
    let out = in_fresh_netns(&format!(
        r#"
        {granted} "$NFTPOL" apply --nft {nft} -f testdata/k8s-docs-test-network-policy
        {granted} {nft} -j list table inet nftpol > /dev/null
        {granted} {nft} add element inet nftpol self-v4 '{{ 10.9.9.9 . 10.9.9.9 }}'
        {granted} "$NFTPOL" uninstall --nft {nft}
        ! {nft} list table inet nftpol 2>/dev/null
        echo all-ok
        "#
    ));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("all-ok"),
        "with {caps:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let none = limited("");
    let out = in_fresh_netns(&format!(
        r#"
        set +e
        {none} "$NFTPOL" apply --nft {nft} -f testdata/k8s-docs-test-network-policy
        echo "code=$?"
        "#
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("code=2"),
        "without capabilities: {stdout} {stderr}"
    );
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
}

/// charts/nftpol/values.yaml has a value `agent.<flag in camelCase>` for
/// every flag of `nftpol run` but `--node` (each pod's NODE_NAME), and no
/// other besides `logLevel` (RUST_LOG); the comment above each names its
/// flag, and gives the binary's default where the value is empty (the flag
/// left out). The args helper passes each one (tests/helm.rs renders them
/// with the real helm).
#[test]
fn the_chart_has_a_value_for_every_run_flag() {
    let text = read("charts/nftpol/values.yaml");
    let values = parse_yaml(&text).remove(0);
    let agent = values["agent"].as_object().expect("values.yaml: agent");
    let helpers = read("charts/nftpol/templates/_helpers.tpl");
    let lines: Vec<&str> = text.lines().collect();
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("run subcommand");
    let mut want = BTreeSet::from(["logLevel".to_string()]);
    for a in run.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        if matches!(long, "help" | "version" | "node") {
            continue;
        }
        let key = nftpol_testkit::chart_value_key(long);
        want.insert(key.clone());
        let value = agent
            .get(&key)
            .unwrap_or_else(|| panic!("charts/nftpol/values.yaml: no agent.{key} for --{long}"));
        // The comment lines right above `  key:`.
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("  {key}:")))
            .unwrap();
        let comment: String = lines[..at]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with('#'))
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            comment.contains(&format!("--{long}")),
            "values.yaml: the comment of agent.{key} names --{long}: {comment}"
        );
        if value == &Value::String(String::new()) {
            for d in a.get_default_values() {
                let d = d.to_string_lossy();
                assert!(
                    comment.contains(&format!("({d})")),
                    "values.yaml: agent.{key} is empty, so its comment gives the default ({d}): {comment}"
                );
            }
        }
        assert!(
            helpers.contains(&format!("(list \"--{long}\" $a.{key})")),
            "charts/nftpol/templates/_helpers.tpl: nftpol.args passes --{long} from agent.{key}"
        );
    }
    let have: BTreeSet<String> = agent.keys().cloned().collect();
    assert_eq!(
        have, want,
        "values.yaml agent.* vs the flags of `nftpol run`"
    );
}

/// charts/nftpol/values.schema.json declares exactly the values of
/// values.yaml (top level and `agent.*`), and refuses any other, so that
/// helm rejects a misspelt value instead of ignoring it.
#[test]
fn the_values_schema_declares_exactly_the_values() {
    let values = parse_yaml(&read("charts/nftpol/values.yaml")).remove(0);
    let schema: Value =
        serde_json::from_str(&read("charts/nftpol/values.schema.json")).expect("JSON");
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    for (what, vals, sch) in [
        ("top level", &values, &schema),
        ("agent", &values["agent"], &schema["properties"]["agent"]),
        ("image", &values["image"], &schema["properties"]["image"]),
        (
            "metrics",
            &values["metrics"],
            &schema["properties"]["metrics"],
        ),
    ] {
        assert_eq!(
            keys(&sch["properties"]),
            keys(vals),
            "values.schema.json vs values.yaml: {what}"
        );
        assert_eq!(
            sch["additionalProperties"],
            Value::Bool(false),
            "values.schema.json refuses unknown values at {what}"
        );
    }
}

#[test]
fn the_chart_follows_the_crate_and_deploy() {
    let chart = parse_yaml(&read("charts/nftpol/Chart.yaml")).remove(0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["version"], version, "Chart.yaml version");
    assert_eq!(chart["appVersion"], version, "Chart.yaml appVersion");
    assert_eq!(chart["name"], "nftpol");
    // crds/ (installed by `helm install` when absent, never upgraded or
    // deleted) holds deploy/'s CRD, byte for byte.
    assert!(
        read("charts/nftpol/crds/clusternetworkpolicies.yaml")
            == read("deploy/crd-clusternetworkpolicies.yaml"),
        "charts/nftpol/crds/clusternetworkpolicies.yaml differs from \
         deploy/crd-clusternetworkpolicies.yaml; copy it"
    );
    let crds: Vec<PathBuf> = entries("charts/nftpol/crds");
    assert_eq!(crds.len(), 1, "{crds:?}");
    // The NodeProgramStatus CRD is one of the release's objects (the agent
    // needs it; Helm upgrades it with the chart), byte for byte deploy/'s.
    assert!(
        read("charts/nftpol/templates/crd-nodeprogramstatuses.yaml")
            == read("deploy/manifests/04-crd-nodeprogramstatuses.yaml"),
        "charts/nftpol/templates/crd-nodeprogramstatuses.yaml differs from \
         deploy/manifests/04-crd-nodeprogramstatuses.yaml; copy it"
    );
}
