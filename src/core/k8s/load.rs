//! Reading Kubernetes objects from YAML or JSON: files, directories, stdin,
//! multi-document streams and `kind: List`.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::de::DeserializeOwned;
use serde_json::Value;

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
}

/// Reads every path (file, directory searched recursively for `.yaml`,
/// `.yml` and `.json`, or `-` for stdin). Unreadable or unparsable input is
/// reported as an error diagnostic; everything readable is still returned.
pub fn load_paths(paths: &[PathBuf]) -> (Objects, Vec<Diagnostic>) {
    let mut objs = Objects::default();
    let mut diags = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                Ok(_) => parse_into(&text, "-", &mut objs, &mut diags),
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
                Ok(text) => parse_into(&text, &f.display().to_string(), &mut objs, &mut diags),
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

/// Parses one input text (YAML or JSON, possibly several documents) and
/// appends its objects. `file` names the input in diagnostics.
pub fn parse_into(text: &str, file: &str, objs: &mut Objects, diags: &mut Vec<Diagnostic>) {
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
        add_object(doc, src, objs, diags);
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

fn add_object(doc: Value, src: Source, objs: &mut Objects, diags: &mut Vec<Diagnostic>) {
    let Value::Object(map) = &doc else {
        if !doc.is_null() {
            diags.push(Diagnostic::error("document is not a mapping").at(&src));
        }
        return;
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let name = describe(map);
    match (kind, api_version) {
        ("Namespace", "v1") => decode(doc, src, "Namespace", name, &mut objs.namespaces, diags),
        ("Pod", "v1") => decode(doc, src, "Pod", name, &mut objs.pods, diags),
        ("NetworkPolicy", "networking.k8s.io/v1") => {
            decode(doc, src, "NetworkPolicy", name, &mut objs.policies, diags)
        }
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
            for (j, item) in items.into_iter().enumerate() {
                let isrc = Source {
                    item: Some(j + 1),
                    ..src.clone()
                };
                add_object(item, isrc, objs, diags);
            }
        }
        ("", _) => diags.push(Diagnostic::error("missing `kind`").at(&src).field("kind")),
        ("Namespace" | "Pod" | "NetworkPolicy", v) => diags.push(
            Diagnostic::error(format!("unsupported apiVersion {v:?} for {kind}"))
                .at(&src)
                .on(format!("{kind} {name}"))
                .field("apiVersion"),
        ),
        (k, _) => diags.push(
            Diagnostic::warning(format!("kind {k} is not used by nftpol; skipped"))
                .at(&src)
                .on(format!("{k} {name}")),
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

fn decode<T: DeserializeOwned>(
    doc: Value,
    src: Source,
    kind: &str,
    name: String,
    out: &mut Vec<(Source, T)>,
    diags: &mut Vec<Diagnostic>,
) {
    match serde_path_to_error::deserialize::<_, T>(doc) {
        Ok(obj) => out.push((src, obj)),
        Err(e) => {
            let path = e.path().to_string();
            diags.push(
                Diagnostic::error(e.into_inner().to_string())
                    .at(&src)
                    .on(format!("{kind} {name}"))
                    .field(path),
            )
        }
    }
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
}
