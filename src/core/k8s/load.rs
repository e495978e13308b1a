//! Reading Kubernetes objects from YAML or JSON: files, directories, stdin,
//! multi-document streams and `kind: List`.
//!
//! Unknown fields are errors, as with kubectl's default strict validation
//! (SPEC 1c): a misspelt field (`matchLabel`) would otherwise be dropped
//! silently and could widen access. See [`unknown_fields`].

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::cnp::{self, ClusterNetworkPolicy};
use crate::core::diag::{Diagnostic, Source};

/// Objects read from the input, each with where it came from, in input order.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    /// Namespaces.
    pub namespaces: Vec<(Source, Namespace)>,
    /// Pods.
    pub pods: Vec<(Source, Pod)>,
    /// NetworkPolicies.
    pub policies: Vec<(Source, NetworkPolicy)>,
    /// ClusterNetworkPolicies (policy.networking.k8s.io/v1alpha2).
    pub cluster_policies: Vec<(Source, ClusterNetworkPolicy)>,
    /// Nodes (for ClusterNetworkPolicy `nodes` peers).
    pub nodes: Vec<(Source, Node)>,
    /// Services: never compiled (nftpol sees traffic after kube-proxy's
    /// DNAT), read for the lints (`core::lint`: the Service range, the API
    /// server's ports).
    pub services: Vec<(Source, Service)>,
    /// EndpointSlices (discovery.k8s.io/v1), read for the lints only (the
    /// API server's endpoints behind Service default/kubernetes).
    pub endpoint_slices: Vec<(Source, EndpointSlice)>,
}

/// What an unknown field in an object nftpol reads is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownFields {
    /// An error, as kubectl's strict validation makes it (the default).
    #[default]
    Reject,
    /// A warning naming the field, which is ignored (`--lenient`).
    Warn,
}

impl UnknownFields {
    /// `Warn` when `lenient`, else `Reject`.
    pub fn from_lenient(lenient: bool) -> Self {
        if lenient {
            UnknownFields::Warn
        } else {
            UnknownFields::Reject
        }
    }
}

/// [`load_paths_with`] rejecting unknown fields.
pub fn load_paths(paths: &[PathBuf]) -> (Objects, Vec<Diagnostic>) {
    load_paths_with(paths, UnknownFields::Reject)
}

/// Reads every path (file, directory searched recursively for `.yaml`,
/// `.yml` and `.json`, or `-` for stdin). Unreadable or unparsable input,
/// and unknown fields unless `unknown` is `Warn`, are reported as error
/// diagnostics; everything readable is still returned (an object with an
/// unknown field too: callers stop on load errors).
pub fn load_paths_with(paths: &[PathBuf], unknown: UnknownFields) -> (Objects, Vec<Diagnostic>) {
    let mut objs = Objects::default();
    let mut diags = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                Ok(_) => parse_into_with(&text, "-", unknown, &mut objs, &mut diags),
                Err(e) => diags.push(Diagnostic::error(format!("reading stdin: {e}"))),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect_files(p, true, &mut files) {
            diags.push(Diagnostic::error(format!("{}: {e}", p.display())));
            continue;
        }
        for f in files {
            match std::fs::read_to_string(&f) {
                Ok(text) => {
                    let file = f.display().to_string();
                    parse_into_with(&text, &file, unknown, &mut objs, &mut diags)
                }
                Err(e) => diags.push(Diagnostic::error(format!("{}: {e}", f.display()))),
            }
        }
    }
    (objs, diags)
}

fn collect_files(p: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(p)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            collect_files(&e, false, out)?;
        }
    } else if explicit
        || matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        )
    {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// [`parse_into_with`] rejecting unknown fields.
pub fn parse_into(text: &str, file: &str, objs: &mut Objects, diags: &mut Vec<Diagnostic>) {
    parse_into_with(text, file, UnknownFields::Reject, objs, diags)
}

/// Parses one input text (YAML or JSON, possibly several documents) and
/// appends its objects. `file` names the input in diagnostics.
pub fn parse_into_with(
    text: &str,
    file: &str,
    unknown: UnknownFields,
    objs: &mut Objects,
    diags: &mut Vec<Diagnostic>,
) {
    let docs = match parse_documents(text) {
        Ok(d) => d,
        Err(msg) => {
            diags.push(Diagnostic::error(format!("{file}: cannot parse: {msg}")));
            return;
        }
    };
    for (i, doc) in docs.into_iter().enumerate() {
        let src = Source {
            file: file.to_string(),
            document: i + 1,
            item: None,
        };
        add_object(doc, src, unknown, objs, diags);
    }
}

/// Splits a text into documents: a JSON stream when it starts with `{` or
/// `[`, YAML otherwise (YAML documents that are null or empty are skipped).
fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut out = Vec::new();
        for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            match v {
                Ok(Value::Array(items)) => out.extend(items),
                Ok(v) => out.push(v),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(out)
    } else {
        // YAML 1.2 booleans only: `n`, `yes` or `on` stay strings, as kubectl
        // reads them into string fields such as names and label values.
        let options = serde_saphyr::options! { strict_booleans: true };
        serde_saphyr::from_multiple_with_options::<Value>(text, options).map_err(|e| e.to_string())
    }
}

fn add_object(
    doc: Value,
    src: Source,
    unknown: UnknownFields,
    objs: &mut Objects,
    diags: &mut Vec<Diagnostic>,
) {
    let Value::Object(map) = &doc else {
        if !doc.is_null() {
            diags.push(Diagnostic::error("document is not a mapping").at(&src));
        }
        return;
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let name = describe(map);
    let object = format!("{kind} {name}");
    match (kind, api_version) {
        ("Namespace", "v1") => decode(doc, &src, &object, unknown, &mut objs.namespaces, diags),
        ("Pod", "v1") => decode(doc, &src, &object, unknown, &mut objs.pods, diags),
        ("NetworkPolicy", "networking.k8s.io/v1") => {
            decode(doc, &src, &object, unknown, &mut objs.policies, diags)
        }
        ("Node", "v1") => decode(doc, &src, &object, unknown, &mut objs.nodes, diags),
        ("Service", "v1") => decode(doc, &src, &object, unknown, &mut objs.services, diags),
        ("EndpointSlice", "discovery.k8s.io/v1") => {
            decode(doc, &src, &object, unknown, &mut objs.endpoint_slices, diags)
        }
        ("ClusterNetworkPolicy", cnp::API_VERSION) => decode(
            doc,
            &src,
            &object,
            unknown,
            &mut objs.cluster_policies,
            diags,
        ),
        ("ClusterNetworkPolicy", v) => diags.push(
            Diagnostic::error(format!(
                "unsupported apiVersion {v:?} for ClusterNetworkPolicy (nftpol reads {}; v1alpha1 had AdminNetworkPolicy and BaselineAdminNetworkPolicy instead)",
                cnp::API_VERSION
            ))
            .at(&src)
            .on(object)
            .field("apiVersion"),
        ),
        (k, _) if k == "List" || (k.ends_with("List") && map.contains_key("items")) => {
            let items = match map.get("items") {
                Some(Value::Array(items)) => items.clone(),
                None | Some(Value::Null) => Vec::new(),
                Some(_) => {
                    diags.push(
                        Diagnostic::error("must be a list")
                            .at(&src)
                            .on(kind)
                            .field("items"),
                    );
                    return;
                }
            };
            for field in list_unknown_fields(map) {
                diags.push(unknown_field(unknown, &src, kind, field));
            }
            // A typed list (`PodList`, as the API returns it) may leave
            // `kind` and `apiVersion` out of its items: they are the list's.
            let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
            for (j, mut item) in items.into_iter().enumerate() {
                if let (Some(k), Value::Object(m)) = (item_kind, &mut item) {
                    m.entry("kind").or_insert_with(|| Value::from(k));
                    if !api_version.is_empty() {
                        m.entry("apiVersion")
                            .or_insert_with(|| Value::from(api_version));
                    }
                }
                let isrc = Source {
                    item: Some(j + 1),
                    ..src.clone()
                };
                add_object(item, isrc, unknown, objs, diags);
            }
        }
        ("", _) => diags.push(Diagnostic::error("missing `kind`").at(&src).field("kind")),
        ("Namespace" | "Pod" | "NetworkPolicy" | "Node", v) => diags.push(
            Diagnostic::error(format!("unsupported apiVersion {v:?} for {kind}"))
                .at(&src)
                .on(object)
                .field("apiVersion"),
        ),
        (k, _) => diags.push(
            Diagnostic::warning(format!("kind {k} is not used by nftpol; skipped"))
                .at(&src)
                .on(object),
        ),
    }
}

/// `namespace/name` (or `name`) of a raw object, for messages.
fn describe(map: &serde_json::Map<String, Value>) -> String {
    let meta = map.get("metadata");
    let get = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    match (get("namespace"), get("name")) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.to_string(),
        (_, None) => "<unnamed>".to_string(),
    }
}

/// Decodes one object of a kind nftpol reads, then checks it for unknown
/// fields (each reported as an error, or a warning with `Warn`; the object
/// is kept either way).
fn decode<T: DeserializeOwned + Serialize>(
    doc: Value,
    src: &Source,
    object: &str,
    unknown: UnknownFields,
    out: &mut Vec<(Source, T)>,
    diags: &mut Vec<Diagnostic>,
) {
    match serde_path_to_error::deserialize::<_, T>(&doc) {
        Ok(obj) => {
            for field in unknown_fields(&doc, &obj) {
                diags.push(unknown_field(unknown, src, object, field));
            }
            out.push((src.clone(), obj));
        }
        Err(e) => {
            let mut path = e.path().to_string();
            // A missing required field is named as the API server names it
            // (`spec`, not the object that lacks it).
            let msg = e.inner().to_string();
            if let Some(field) = msg
                .strip_prefix("missing field `")
                .and_then(|m| m.split('`').next())
            {
                path = if path == "." || path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
            }
            diags.push(
                Diagnostic::error(e.into_inner().to_string())
                    .at(src)
                    .on(object)
                    .field(path),
            )
        }
    }
}

/// The diagnostic for one unknown field.
fn unknown_field(unknown: UnknownFields, src: &Source, object: &str, field: String) -> Diagnostic {
    let d = match unknown {
        UnknownFields::Reject => Diagnostic::error(
            "unknown field (kubectl's strict validation rejects it: a misspelt field could silently widen access; --lenient makes this a warning)",
        ),
        UnknownFields::Warn => Diagnostic::warning("unknown field, ignored (--lenient)"),
    };
    d.at(src).on(object).field(field)
}

/// Every field path of `input` that the typed object `parsed` (decoded
/// from it) does not know, in the API server's spelling
/// (`spec.ingress[0].from[0].namespaceSelector.matchLabel`), keys sorted.
///
/// Found by re-serialising `parsed` and walking both values: a key present
/// in the input and absent after the round trip was ignored by the decoder.
/// k8s-openapi keeps empty lists and maps (`Some(vec![])` serialises as
/// `[]`), and keys with arbitrary names (labels, annotations, `fieldsV1`)
/// survive the round trip, so only a `null` can vanish legitimately: a key
/// whose value is `null` is not reported (a known one means "absent", and
/// so does an unknown one, so it cannot change what the object means).
pub fn unknown_fields<T: Serialize>(input: &Value, parsed: &T) -> Vec<String> {
    let Ok(known) = serde_json::to_value(parsed) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(input, &known, &mut String::new(), &mut out);
    out
}

fn walk(input: &Value, known: &Value, path: &mut String, out: &mut Vec<String>) {
    let len = path.len();
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match k.get(key) {
                    Some(kv) => walk(v, kv, path, out),
                    None if v.is_null() => {}
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (j, (v, kv)) in i.iter().zip(k).enumerate() {
                path.push_str(&format!("[{j}]"));
                walk(v, kv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Unknown fields of a `List` wrapper itself (its items are checked as
/// objects): `apiVersion`, `kind`, `metadata` (a ListMeta) and `items`.
fn list_unknown_fields(map: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (key, v) in map {
        match key.as_str() {
            "apiVersion" | "kind" | "items" => {}
            "metadata" => {
                // A metadata that is not a ListMeta at all is left to the
                // items: nftpol reads nothing from it.
                if let Ok(meta) = serde_json::from_value::<ListMeta>(v.clone()) {
                    out.extend(
                        unknown_fields(v, &meta)
                            .into_iter()
                            .map(|f| format!("metadata.{f}")),
                    );
                }
            }
            _ if v.is_null() => {}
            _ => out.push(key.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Objects, Vec<Diagnostic>) {
        let mut o = Objects::default();
        let mut d = Vec::new();
        parse_into(text, "t.yaml", &mut o, &mut d);
        (o, d)
    }

    #[test]
    fn multi_document_and_list() {
        let (o, d) = parse(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n",
        );
        assert_eq!(o.namespaces.len(), 1);
        assert_eq!(o.pods.len(), 1);
        assert_eq!(o.pods[0].0.item, Some(1), "list items keep their index");
        assert_eq!(d.len(), 1, "the ConfigMap is skipped with a warning: {d:?}");
        assert!(!d[0].is_error());
        assert!(d[0].to_string().contains("ConfigMap c"), "{}", d[0]);
    }

    #[test]
    fn json_stream() {
        let (o, d) = parse(
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}} [{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}]"#,
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(o.namespaces.len(), 2);
    }

    #[test]
    fn type_errors_name_the_field() {
        let (o, d) = parse(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: n}\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - endPort: eighty\n",
        );
        assert!(o.policies.is_empty());
        let msg = d[0].to_string();
        assert!(msg.contains("t.yaml (document 1)"), "{msg}");
        assert!(msg.contains("NetworkPolicy n/p"), "{msg}");
        assert!(msg.contains("spec.ingress[0].ports[0].endPort"), "{msg}");
    }

    #[test]
    fn unparsable_yaml_is_an_error_not_a_panic() {
        let (_, d) = parse("kind: Pod\n  bad: [indent\n");
        assert!(d[0].is_error());
        assert!(d[0].to_string().contains("cannot parse"), "{}", d[0]);
        let (_, d) = parse("- 1\n- 2\n");
        assert!(d.iter().all(|d| d.is_error()) && !d.is_empty());
        let (_, d) = parse("apiVersion: v1\nmetadata: {name: x}\n");
        assert!(d[0].to_string().contains("missing `kind`"), "{}", d[0]);
    }

    fn fields(d: &[Diagnostic]) -> Vec<(bool, String, String)> {
        d.iter()
            .map(|d| {
                (
                    d.is_error(),
                    d.to_string(),
                    d.field.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn unknown_fields_are_errors_named_like_the_api_server() {
        let (o, d) = parse(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: n, labelz: {a: b}}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabel: {a: b}}\n    ports: [{port: 80, protocl: UDP}]\n",
        );
        let f = fields(&d);
        let paths: Vec<&str> = f.iter().map(|(_, _, p)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metadata.labelz",
                "spec.ingress[0].from[0].namespaceSelector.matchLabel",
                "spec.ingress[0].ports[0].protocl",
            ],
            "{d:?}"
        );
        assert!(f.iter().all(|(e, _, _)| *e), "errors: {d:?}");
        assert!(
            f[1].1.contains("t.yaml (document 1): NetworkPolicy n/p: "),
            "{}",
            f[1].1
        );
        assert_eq!(o.policies.len(), 1, "the object is still returned");
    }

    #[test]
    fn lenient_makes_unknown_fields_warnings() {
        let mut o = Objects::default();
        let mut d = Vec::new();
        parse_into_with(
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}, spec: {finalisers: [x]}}\n",
            "t.yaml",
            UnknownFields::Warn,
            &mut o,
            &mut d,
        );
        assert_eq!(o.namespaces.len(), 1);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(!d[0].is_error());
        assert_eq!(
            d[0].to_string(),
            "warning: t.yaml (document 1, item 1): Namespace a: spec.finalisers: unknown field, ignored (--lenient)"
        );
    }

    #[test]
    fn list_wrappers_are_checked_too() {
        let (_, d) = parse(
            "apiVersion: v1\nkind: PodList\nmetadata: {resourceVersion: '1', continu: x}\nitem: []\nitems: []\n",
        );
        let paths: Vec<String> = fields(&d).into_iter().map(|f| f.2).collect();
        assert_eq!(paths, ["item", "metadata.continu"], "{d:?}");
    }

    #[test]
    fn known_fields_that_serialise_differently_are_not_unknown() {
        // Nulls, empty lists and maps, int-or-string ports, quantities given
        // as numbers, times, status, managedFields with free-form fieldsV1.
        let (o, d) = parse(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: n
  labels: {}
  annotations: null
  creationTimestamp: "2024-05-01T10:00:00Z"
  managedFields: [{manager: m, operation: Update, fieldsType: FieldsV1, fieldsV1: {"f:spec": {"f:x": {}}}}]
spec:
  nodeName: n1
  containers:
  - name: c
    ports: [{containerPort: 80, name: http}]
    resources: {limits: {cpu: 1, memory: 1Gi}, requests: {}}
    readinessProbe: {httpGet: {port: http}}
    livenessProbe: {tcpSocket: {port: 80}}
    env: []
  volumes: null
status:
  phase: Running
  conditions: [{type: Ready, status: "True", lastProbeTime: null}]
  podIP: 10.0.0.1
  podIPs: [{ip: 10.0.0.1}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: n}
spec:
  podSelector: {matchLabels: null, matchExpressions: []}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [], ports: [{port: 80}, {port: http}, {port: 81, endPort: 90}]}]
  egress: []
"#,
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!((o.pods.len(), o.policies.len()), (1, 1));
    }

    #[test]
    fn every_testdata_case_loads_without_unknown_fields() {
        // cluster-network-policy/ holds deliberately invalid inputs, crd/ CRDs.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.ends_with("cluster-network-policy") && !p.ends_with("crd"))
            .collect();
        dirs.sort();
        let (_, d) = load_paths(&dirs);
        let unknown: Vec<String> = d
            .iter()
            .filter(|d| d.message.starts_with("unknown field"))
            .map(ToString::to_string)
            .collect();
        assert!(unknown.is_empty(), "{unknown:#?}");
    }
}
