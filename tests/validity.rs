//! The API server as the oracle of validity (SPEC 1c): for every
//! NetworkPolicy of every `testdata/` case (the conformance cases of
//! `testdata/upstream/` included, their templates filled in for each family)
//! and for thousands of random policies from a generator that deliberately
//! makes both valid and invalid ones, the real kube-apiserver's verdict on a
//! server-side dry-run create (`?dryRun=All&fieldValidation=Strict`: accepted,
//! or rejected naming fields in `status.details.causes[].field`) must equal
//! nftpol's (loaded with `core::k8s::parse_into` and converted with
//! `convert::policy`: valid, or invalid with the field paths of its error
//! diagnostics). Equal verdict and equal set of field paths is agreement.
//!
//! An unknown field makes the API server stop before validation (400, `strict
//! decoding error: unknown field "…"`); then only nftpol's unknown-field
//! errors are compared with the fields the server names.
//!
//! One control plane (the test kit's `control_plane`) in a fresh network
//! namespace; needs root and the control-plane binaries (built first if
//! need be; without them the test fails).
//! `NFTPOL_VALIDITY_SEED` and `NFTPOL_VALIDITY_POLICIES` override the
//! generator's seed and count (printed either way).
//!
//! ClusterNetworkPolicies, against upstream's CRD and nftpol's own, are in
//! `validity/cnp.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use futures::StreamExt;
use nftpol::core::diag::Severity;
use nftpol::core::k8s::{Objects, convert, parse_into};
use nftpol_testkit::Family;
use nftpol_testkit::cases::{case_dirs, testdata};
use nftpol_testkit::conformance::{Base, load_cases};
use nftpol_testkit::control_plane::{ControlPlane, ensure_binaries};
use nftpol_testkit::netns::in_new_netns;
use serde_json::{Map, Value, json};

#[path = "validity/cnp.rs"]
mod cnp;

const DEFAULT_SEED: u64 = 0x6e66_7470_6f6c_0012;
const DEFAULT_POLICIES: usize = 2500;
/// Requests in flight at once.
const CONCURRENCY: usize = 16;

/// What one side says about a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Accepted.
    Valid,
    /// Rejected by validation, naming these fields.
    Invalid(BTreeSet<String>),
    /// Rejected before validation for these unknown fields.
    Unknown(BTreeSet<String>),
    /// Anything else the server answered (never agrees).
    Other(String),
}

/// One policy to judge: where it came from and the object as written.
struct Item {
    origin: String,
    object: Value,
}

// ---------------------------------------------------------------- the corpus

/// The documents of a YAML or JSON text, `kind: List` flattened.
fn documents(text: &str) -> Vec<Value> {
    let t = text.trim_start();
    let docs: Vec<Value> = if t.starts_with('{') || t.starts_with('[') {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .map(|v| v.expect("JSON documents"))
            .collect()
    } else {
        let options = serde_saphyr::options! { strict_booleans: true };
        serde_saphyr::from_multiple_with_options::<Value>(text, options).expect("YAML documents")
    };
    let mut out = Vec::new();
    for d in docs {
        match d {
            Value::Array(items) => out.extend(items),
            Value::Object(ref m) if m.get("items").is_some_and(Value::is_array) => {
                out.extend(m["items"].as_array().unwrap().iter().cloned())
            }
            Value::Null => {}
            d => out.push(d),
        }
    }
    out
}

fn policies_of(text: &str, origin: &str, out: &mut Vec<Item>) {
    for (i, d) in documents(text).into_iter().enumerate() {
        if d["kind"] == "NetworkPolicy" {
            out.push(Item {
                origin: format!("{origin} document {}", i + 1),
                object: d,
            });
        }
    }
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if p
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(p);
        }
    }
}

/// Every NetworkPolicy of every `testdata/<case>/`.
fn case_policies() -> Vec<Item> {
    let mut out = Vec::new();
    for dir in case_dirs() {
        let mut fs = Vec::new();
        files(&dir, &mut fs);
        for f in fs {
            let text = std::fs::read_to_string(&f).unwrap();
            let rel = f.strip_prefix(testdata()).unwrap().display().to_string();
            policies_of(&text, &format!("testdata/{rel}"), &mut out);
        }
    }
    out
}

/// Every NetworkPolicy of every step of `testdata/upstream/`, once per
/// family when the step uses templates.
fn upstream_policies() -> Vec<Item> {
    let dir = testdata().join("upstream");
    let base = Base::load(&dir.join("cluster.yaml")).expect("upstream/cluster.yaml");
    let mut out = Vec::new();
    for (path, case) in load_cases(&dir).expect("upstream cases") {
        let case = case.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        for (s, step) in case.steps.iter().enumerate() {
            let Some(objects) = &step.objects else {
                continue;
            };
            let families: &[(Family, &str)] = if objects.contains("{{") {
                &[(Family::V4, " v4"), (Family::V6, " v6")]
            } else {
                &[(Family::V4, "")]
            };
            for (family, tag) in families {
                let text = base.substitute(objects, *family).unwrap();
                let origin = format!("testdata/upstream/{file} step {}{tag}", s + 1);
                policies_of(&text, &origin, &mut out);
            }
        }
    }
    out
}

// ------------------------------------------------------------- the generator

/// xorshift64*: small, seeded, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pct(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())].clone()
    }
}

/// The generator: `bad` is the chance (in %) that each choice is a wrong one.
struct Gen {
    rng: Rng,
    bad: usize,
}

const GOOD_KEYS: &[&str] = &[
    "app",
    "role",
    "tier",
    "k8s.io/name",
    "example.com/team",
    "a.b",
    "A_b-c",
    "x",
    "kubernetes.io/metadata.name",
];
const BAD_KEYS: &[&str] = &[
    "",
    "bad key",
    "-app",
    "app-",
    "/app",
    "example.com/",
    "a/b/c",
    "Example.com/x",
    "a_b.com/x",
    "app!",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];
const GOOD_VALUES: &[&str] = &[
    "",
    "web",
    "db",
    "a.b_c-d",
    "A",
    "x",
    "v1",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];
const BAD_VALUES: &[&str] = &[
    "-web",
    "web-",
    "a b",
    "x/y",
    "caf\u{e9}",
    "_x",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];
const GOOD_OPS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];
const BAD_OPS: &[&str] = &["in", "Equals", "", "exists", "NotExists"];
/// Valid CIDRs, each with strict subnets for `except`.
const GOOD_CIDRS: &[(&str, &[&str])] = &[
    (
        "10.0.0.0/8",
        &["10.1.0.0/16", "10.0.0.0/9", "10.255.255.255/32"],
    ),
    ("10.1.0.0/16", &["10.1.2.0/24", "10.1.128.0/17"]),
    ("192.168.1.0/24", &["192.168.1.128/25", "192.168.1.7/32"]),
    ("0.0.0.0/0", &["10.0.0.0/8", "128.0.0.0/1"]),
    ("1.2.3.4/32", &[]),
    ("fd00::/8", &["fd00:10:244::/56", "fd01::/16"]),
    ("2001:db8::/32", &["2001:db8:1::/48", "2001:DB8:FFFF::/48"]),
    ("::/0", &["fd00::/8", "::/1"]),
    ("fd00:10:244::/56", &["fd00:10:244:1::/64"]),
];
const BAD_CIDRS: &[&str] = &[
    "10.0.0.1/8",
    "010.0.0.0/8",
    "10.0.0.0/08",
    "10.0.0.0",
    "10.0.0.0/33",
    "",
    "300.1.0.0/16",
    "::ffff:10.0.0.0/104",
    "2001:db8::1/32",
    "fe80::%eth0/64",
    "10.0.0.0/+8",
    "garbage",
    "1.2.3/24",
    "2001:db8::/129",
    " 10.0.0.0/8",
];
const BAD_EXCEPTS: &[&str] = &[
    "11.0.0.0/16",
    "172.16.0.0/12",
    "fd00::/64",
    "10.0.0.0/8",
    "10.1.0.1/16",
    "x",
    "",
    "::ffff:10.1.0.0/112",
    "10.1.0.0/016",
    "0.0.0.0/0",
    "::/0",
    "2001:db8::/32",
    "010.1.0.0/16",
];
const GOOD_PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const BAD_PROTOCOLS: &[&str] = &["tcp", "ICMP", "", "Tcp", "HTTP"];
const GOOD_PORT_NUMBERS: &[i64] = &[1, 53, 80, 443, 8080, 65535];
const BAD_PORT_NUMBERS: &[i64] = &[0, -1, 65536, 100_000];
const GOOD_PORT_NAMES: &[&str] = &["http", "dns-tcp", "metrics", "a", "web-1", "x1y"];
const BAD_PORT_NAMES: &[&str] = &[
    "80",
    "BAD",
    "-x",
    "x-",
    "a--b",
    "abcdefghijklmnop",
    "",
    "web_1",
    "http ",
];
const GOOD_POLICY_TYPES: &[&[&str]] = &[
    &["Ingress"],
    &["Egress"],
    &["Ingress", "Egress"],
    &["Egress", "Ingress"],
    &["Ingress", "Ingress"],
];
const BAD_POLICY_TYPES: &[&[&str]] = &[
    &["Bogus"],
    &["ingress"],
    &["Ingress", "Egress", "Ingress"],
    &["Ingress", ""],
    &["Egress", "Sideways"],
];
const NAMESPACES: &[&str] = &["default", "rand-a"];

impl Gen {
    fn bad(&mut self) -> bool {
        self.bad > 0 && self.rng.pct(self.bad)
    }

    fn key(&mut self) -> String {
        if self.bad() {
            self.rng.pick(BAD_KEYS)
        } else {
            self.rng.pick(GOOD_KEYS)
        }
        .to_string()
    }

    fn value(&mut self) -> String {
        if self.bad() {
            self.rng.pick(BAD_VALUES)
        } else {
            self.rng.pick(GOOD_VALUES)
        }
        .to_string()
    }

    fn selector(&mut self) -> Value {
        let mut s = Map::new();
        if self.rng.pct(25) {
            return Value::Object(s);
        }
        if self.rng.pct(50) {
            let mut labels = Map::new();
            for _ in 0..1 + self.rng.below(2) {
                labels.insert(self.key(), Value::from(self.value()));
            }
            s.insert("matchLabels".into(), Value::Object(labels));
        }
        if self.rng.pct(50) {
            let mut exprs = Vec::new();
            for _ in 0..1 + self.rng.below(2) {
                let bad_op = self.bad();
                let op = if bad_op {
                    self.rng.pick(BAD_OPS)
                } else {
                    self.rng.pick(GOOD_OPS)
                };
                let needs_values = matches!(op, "In" | "NotIn");
                // Values as the operator wants them, or (a wrong choice) not.
                let give_values = if bad_op {
                    self.rng.pct(50)
                } else {
                    needs_values != self.bad()
                };
                let mut e = Map::new();
                e.insert("key".into(), Value::from(self.key()));
                e.insert("operator".into(), Value::from(op));
                if give_values {
                    let vs: Vec<Value> = (0..1 + self.rng.below(2))
                        .map(|_| Value::from(self.value()))
                        .collect();
                    e.insert("values".into(), Value::Array(vs));
                } else if self.rng.pct(30) {
                    e.insert("values".into(), json!([]));
                }
                exprs.push(Value::Object(e));
            }
            s.insert("matchExpressions".into(), Value::Array(exprs));
        }
        Value::Object(s)
    }

    fn ip_block(&mut self) -> Value {
        let mut b = Map::new();
        let subnets: &[&str] = if self.bad() {
            b.insert("cidr".into(), Value::from(self.rng.pick(BAD_CIDRS)));
            &[]
        } else {
            let (cidr, subnets) = self.rng.pick(GOOD_CIDRS);
            b.insert("cidr".into(), Value::from(cidr));
            subnets
        };
        if self.rng.pct(40) {
            let except: Vec<Value> = (0..1 + self.rng.below(2))
                .map(|_| {
                    if subnets.is_empty() || self.bad() {
                        self.rng.pick(BAD_EXCEPTS)
                    } else {
                        self.rng.pick(subnets)
                    }
                })
                .map(Value::from)
                .collect();
            b.insert("except".into(), Value::Array(except));
        }
        Value::Object(b)
    }

    fn peer(&mut self) -> Value {
        if self.bad() {
            return match self.rng.below(3) {
                0 => json!({}),
                1 => json!({"ipBlock": self.ip_block(), "podSelector": self.selector()}),
                _ => json!({"ipBlock": self.ip_block(), "namespaceSelector": self.selector()}),
            };
        }
        match self.rng.below(9) {
            0..=2 => json!({"podSelector": self.selector()}),
            3 | 4 => json!({"namespaceSelector": self.selector()}),
            5 => json!({"namespaceSelector": self.selector(), "podSelector": self.selector()}),
            _ => json!({"ipBlock": self.ip_block()}),
        }
    }

    fn port(&mut self) -> Value {
        let mut p = Map::new();
        if !self.rng.pct(30) {
            let proto = if self.bad() {
                self.rng.pick(BAD_PROTOCOLS)
            } else {
                self.rng.pick(GOOD_PROTOCOLS)
            };
            p.insert("protocol".into(), Value::from(proto));
        }
        match self.rng.below(10) {
            0 | 1 => {
                if self.bad() {
                    p.insert("endPort".into(), Value::from(90));
                }
            }
            2..=6 => {
                let n = if self.bad() {
                    self.rng.pick(BAD_PORT_NUMBERS)
                } else {
                    self.rng.pick(GOOD_PORT_NUMBERS)
                };
                p.insert("port".into(), Value::from(n));
                if self.rng.pct(30) {
                    let end = if self.bad() {
                        self.rng.pick(&[n - 1, 65536, 0, -5])
                    } else {
                        (n + self.rng.pick(&[0, 1, 100])).min(65535)
                    };
                    p.insert("endPort".into(), Value::from(end));
                }
            }
            _ => {
                let name = if self.bad() {
                    self.rng.pick(BAD_PORT_NAMES)
                } else {
                    self.rng.pick(GOOD_PORT_NAMES)
                };
                p.insert("port".into(), Value::from(name));
                if self.bad() {
                    p.insert("endPort".into(), Value::from(90));
                }
            }
        }
        Value::Object(p)
    }

    /// A list of 1-3 items, or (sometimes) absent or empty.
    fn list(&mut self, f: impl Fn(&mut Self) -> Value) -> Option<Value> {
        match self.rng.below(10) {
            0..=2 => None,
            3 => Some(json!([])),
            _ => Some(Value::Array(
                (0..1 + self.rng.below(3)).map(|_| f(self)).collect(),
            )),
        }
    }

    fn rules(&mut self, peer_field: &str) -> Option<Value> {
        if self.rng.pct(40) {
            return None;
        }
        let rules = (0..self.rng.below(3))
            .map(|_| {
                let mut r = Map::new();
                if let Some(peers) = self.list(Self::peer) {
                    r.insert(peer_field.into(), peers);
                }
                if let Some(ports) = self.list(Self::port) {
                    r.insert("ports".into(), ports);
                }
                Value::Object(r)
            })
            .collect();
        Some(Value::Array(rules))
    }

    fn policy(&mut self, i: usize) -> Value {
        // A third of the policies make no wrong choice at all.
        self.bad = self.rng.pick(&[0, 0, 0, 3, 8, 15]);
        let mut spec = Map::new();
        spec.insert("podSelector".into(), self.selector());
        match self.rng.below(10) {
            0..=4 => {}
            5 => {
                spec.insert("policyTypes".into(), json!([]));
            }
            _ => {
                let types = if self.bad() {
                    self.rng.pick(BAD_POLICY_TYPES)
                } else {
                    self.rng.pick(GOOD_POLICY_TYPES)
                };
                spec.insert("policyTypes".into(), json!(types));
            }
        }
        if let Some(r) = self.rules("from") {
            spec.insert("ingress".into(), r);
        }
        if let Some(r) = self.rules("to") {
            spec.insert("egress".into(), r);
        }
        let name = if self.bad() {
            self.rng.pick(BAD_NAMES).to_string()
        } else {
            format!("r-{i:05}")
        };
        let mut object = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": self.rng.pick(NAMESPACES)},
            "spec": spec,
        });
        // Now and then a misspelt field (strict decoding rejects it), at one
        // of the places that exist in this policy.
        if self.bad > 0 && self.rng.pct(4) {
            misspell(&mut object, MISSPELT, &mut self.rng);
        }
        object
    }
}

/// Inserts one misspelt field of `misspelt` (a JSON pointer to its parent
/// object, and its name) whose parent `object` has; nothing if none has.
fn misspell(object: &mut Value, misspelt: &[(&str, &str)], rng: &mut Rng) {
    let places: Vec<&(&str, &str)> = misspelt
        .iter()
        .filter(|(at, _)| object.pointer(at).is_some_and(Value::is_object))
        .collect();
    if places.is_empty() {
        return;
    }
    let (at, field) = *rng.pick(&places);
    object
        .pointer_mut(at)
        .and_then(Value::as_object_mut)
        .unwrap()
        .insert(field.to_string(), json!({}));
}

/// Where a misspelt field goes (a JSON pointer) and its name.
const MISSPELT: &[(&str, &str)] = &[
    ("/spec", "policyType"),
    ("/spec", "ingres"),
    ("/spec/podSelector", "matchLabel"),
    ("/metadata", "label"),
    ("/spec/ingress/0", "froms"),
    ("/spec/ingress/0/from/0", "podselector"),
    ("/spec/ingress/0/ports/0", "endport"),
    ("/spec/egress/0", "port"),
    ("/spec/egress/0/to/0/ipBlock", "excepts"),
    ("/spec/egress/0/to/0/namespaceSelector", "matchExpression"),
];
const BAD_NAMES: &[&str] = &["Bad-Name", "a_b", "-x", "x-", "a..b", "web 1"];

fn random_policies(seed: u64, n: usize) -> Vec<Item> {
    random_items(seed, n, "random", Gen::policy)
}

/// `n` objects from `make`, seeded, each named `<what> #i (seed …)`.
fn random_items(seed: u64, n: usize, what: &str, make: fn(&mut Gen, usize) -> Value) -> Vec<Item> {
    let mut g = Gen {
        rng: Rng(seed.max(1)),
        bad: 0,
    };
    (0..n)
        .map(|i| Item {
            origin: format!("{what} #{i} (seed {seed:#x})"),
            object: make(&mut g, i),
        })
        .collect()
}

// ------------------------------------------------------------- the verdicts

/// nftpol's verdict: the unknown fields if any (the API server stops there),
/// else the fields of the conversion's error diagnostics.
fn nftpol_verdict(object: &Value) -> (Verdict, Vec<String>) {
    let text = serde_json::to_string(object).unwrap();
    let mut objs = Objects::default();
    let mut diags = Vec::new();
    parse_into(&text, "input", &mut objs, &mut diags);
    let unknown: BTreeSet<String> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error && d.message.starts_with("unknown field"))
        .map(|d| d.field.clone().unwrap_or_default())
        .collect();
    for (src, np) in &objs.policies {
        convert::policy(np, Some(src), &mut diags);
    }
    let errors: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let messages = errors.iter().map(|d| d.to_string()).collect();
    let verdict = if !unknown.is_empty() {
        Verdict::Unknown(unknown)
    } else if errors.is_empty() {
        Verdict::Valid
    } else {
        Verdict::Invalid(
            errors
                .iter()
                .map(|d| d.field.clone().unwrap_or_else(|| "<no field>".into()))
                .collect(),
        )
    };
    (verdict, messages)
}

/// `unknown field "X"` occurrences of a strict-decoding message.
fn unknown_fields_in(message: &str) -> BTreeSet<String> {
    message
        .split("unknown field \"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The server's verdict from its status code and body; and its messages.
fn server_verdict(code: u16, body: &[u8]) -> (Verdict, Vec<String>) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v["message"].as_str().unwrap_or_default().to_string();
    match code {
        200 | 201 => (Verdict::Valid, Vec::new()),
        422 => {
            let causes = v["details"]["causes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let fields = causes
                .iter()
                .map(|c| c["field"].as_str().unwrap_or("<no field>").to_string())
                .collect();
            let msgs = causes
                .iter()
                .map(|c| format!("{}: {}", c["field"], c["message"]))
                .collect();
            (Verdict::Invalid(fields), msgs)
        }
        400 if message.contains("strict decoding error") => {
            (Verdict::Unknown(unknown_fields_in(&message)), vec![message])
        }
        _ => (
            Verdict::Other(format!("HTTP {code}: {}", String::from_utf8_lossy(body))),
            vec![message],
        ),
    }
}

async fn post(client: &kube::Client, path: &str, object: &Value) -> (u16, Vec<u8>) {
    let req = hyper::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(
            serde_json::to_vec(object).unwrap(),
        ))
        .unwrap();
    let resp = client
        .send(req)
        .await
        .expect("a response from the API server");
    let code = resp.status().as_u16();
    let body = resp.into_body().collect_bytes().await.expect("a body");
    (code, body.to_vec())
}

/// Dry-run creates every item (`CONCURRENCY` at a time), after creating
/// their namespaces; the server's verdicts in item order.
fn ask_server(cp: &ControlPlane, items: &[Item]) -> Vec<(Verdict, Vec<String>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(cp.admin_kubeconfig()).unwrap();
        let conf = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(conf).unwrap();
        let namespaces: BTreeSet<String> = items.iter().map(|i| namespace_of(&i.object)).collect();
        for ns in &namespaces {
            let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let (code, body) = post(&client, "/api/v1/namespaces", &object).await;
            assert!(
                code == 201 || code == 409,
                "creating namespace {ns}: HTTP {code}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        futures::stream::iter(items)
            .map(|item| {
                let client = client.clone();
                async move {
                    let path = format!(
                        "/apis/networking.k8s.io/v1/namespaces/{}/networkpolicies?dryRun=All&fieldValidation=Strict",
                        namespace_of(&item.object)
                    );
                    let (code, body) = post(&client, &path, &item.object).await;
                    server_verdict(code, &body)
                }
            })
            .buffered(CONCURRENCY)
            .collect()
            .await
    })
}

fn namespace_of(object: &Value) -> String {
    object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok().map(|n| n.to_string()),
                None => Some(v.to_string()),
            };
            parsed
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{name}={v:?} does not parse"))
        }
        _ => default,
    }
}

#[test]
fn nftpol_judges_validity_as_the_api_server_does() {
    ensure_binaries();
    let t0 = Instant::now();
    let seed: u64 = env_or("NFTPOL_VALIDITY_SEED", DEFAULT_SEED);
    let n: usize = env_or("NFTPOL_VALIDITY_POLICIES", DEFAULT_POLICIES);
    let cases = case_policies();
    let upstream = upstream_policies();
    let random = random_policies(seed, n);
    let groups = [
        ("testdata cases", cases.len()),
        ("testdata/upstream steps", upstream.len()),
        ("random", random.len()),
    ];
    let items: Vec<Item> = cases.into_iter().chain(upstream).chain(random).collect();
    println!(
        "seed {seed:#x} (NFTPOL_VALIDITY_SEED), {n} random policies (NFTPOL_VALIDITY_POLICIES)"
    );

    let server = in_new_netns(|| {
        let cp = ControlPlane::start();
        let t = Instant::now();
        let v = ask_server(&cp, &items);
        println!(
            "{} dry-run creates in {:.1} s",
            items.len(),
            t.elapsed().as_secs_f64()
        );
        v
    });
    assert_eq!(server.len(), items.len());

    let mut disagreements = Vec::new();
    // Per group: (policies, accepted by the server, rejected, unknown fields, agreements).
    let mut stats: BTreeMap<usize, [usize; 5]> = BTreeMap::new();
    let mut start = 0;
    for (g, (_, len)) in groups.iter().enumerate() {
        for i in start..start + len {
            let item = &items[i];
            let (sv, smsgs) = &server[i];
            let (nv, nmsgs) = nftpol_verdict(&item.object);
            let s = stats.entry(g).or_default();
            s[0] += 1;
            match sv {
                Verdict::Valid => s[1] += 1,
                Verdict::Invalid(_) => s[2] += 1,
                Verdict::Unknown(_) => s[3] += 1,
                Verdict::Other(_) => {}
            }
            if *sv == nv {
                s[4] += 1;
            } else {
                disagreements.push(format!(
                    "{}:\n  object: {}\n  API server: {sv:?}\n    {}\n  nftpol: {nv:?}\n    {}",
                    item.origin,
                    item.object,
                    smsgs.join("\n    "),
                    nmsgs.join("\n    ")
                ));
            }
        }
        start += len;
    }
    for (g, (name, _)) in groups.iter().enumerate() {
        let [total, ok, invalid, unknown, agree] = stats.get(&g).copied().unwrap_or_default();
        println!(
            "{name}: {total} policies; API server accepted {ok}, rejected {invalid} by validation, {unknown} for unknown fields; nftpol agrees on {agree}"
        );
    }
    let total = items.len();
    println!(
        "total: {total} policies, {} agreements, {} disagreements; {:.1} s",
        total - disagreements.len(),
        disagreements.len(),
        t0.elapsed().as_secs_f64()
    );
    // The generator must keep exercising both sides (a server that accepted
    // everything, or a generator gone all-valid, would agree trivially).
    let [_, ok, invalid, unknown, _] = stats.get(&2).copied().unwrap_or_default();
    if n >= 1000 {
        assert!(
            ok > n / 4 && invalid > n / 10 && unknown > n / 100,
            "the random policies are too one-sided: {ok} accepted, {invalid} invalid, {unknown} with unknown fields of {n}"
        );
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements with the API server:\n\n{}",
        disagreements.len(),
        disagreements.join("\n\n")
    );
}
