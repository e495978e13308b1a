//! ClusterNetworkPolicies: nftpol's verdict against the real API server's
//! with network-policy-api v0.2.0's experimental CRD installed
//! (`testdata/crd/cnp-crd-experimental.yaml`), over every upstream example
//! (`testdata/cluster-network-policy/examples/`), one hand-made case per
//! validation rule, and random policies (mostly valid, each choice wrong now
//! and then). Then the same corpus against nftpol's own generated CRD
//! (`deploy/crd-clusternetworkpolicies.yaml`) after deleting upstream's:
//! the two CRDs must give the same verdict on every object (compatibility).
//!
//! Documented exceptions (docs/cluster-network-policy.md), where nftpol is
//! stricter than the server so as never to widen access: selectors nftpol
//! cannot evaluate (the CRD does not check selectors) and `domainNames`
//! (refused until supported). Their diagnostics carry
//! [`convert::SELECTOR_MARK`] or [`convert::UNSUPPORTED_MARK`] and are left
//! out of nftpol's verdict; they are counted and printed.
//!
//! `NFTPOL_VALIDITY_CNP_SEED` and `NFTPOL_VALIDITY_CNPS` override the seed
//! and the number of random policies.

use super::*;

const CNP_SEED: u64 = 0x636e_7000_0000_0001;
const CNP_COUNT: usize = 1600;
const CRD_NAME: &str = "crd/clusternetworkpolicies.policy.networking.k8s.io";
const CNP_PATH: &str = "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies?dryRun=All&fieldValidation=Strict";

// ------------------------------------------------------------- the corpus

/// Every ClusterNetworkPolicy of the upstream examples (files that are not
/// YAML, as two upstream user stories are, are skipped and counted).
fn example_items(skipped: &mut Vec<String>) -> Vec<Item> {
    let dir = testdata().join("cluster-network-policy/examples");
    let mut fs = Vec::new();
    files(&dir, &mut fs);
    let mut out = Vec::new();
    for f in fs {
        let text = std::fs::read_to_string(&f).unwrap();
        let rel = f.strip_prefix(testdata()).unwrap().display().to_string();
        let options = serde_saphyr::options! { strict_booleans: true };
        let Ok(docs) = serde_saphyr::from_multiple_with_options::<Value>(&text, options) else {
            skipped.push(rel);
            continue;
        };
        for (i, d) in docs.into_iter().enumerate() {
            if d["kind"] == "ClusterNetworkPolicy" {
                out.push(Item {
                    origin: format!("testdata/{rel} document {}", i + 1),
                    object: d,
                });
            }
        }
    }
    out
}

fn cnp(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// A policy using every field, valid.
fn rich() -> Value {
    cnp(
        "rich",
        json!({
            "tier": "Admin",
            "priority": 10,
            "subject": {"namespaces": {"matchLabels": {"team": "a"}}},
            "ingress": [{
                "name": "in-0",
                "action": "Accept",
                "from": [
                    {"namespaces": {}},
                    {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}}
                ],
                "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]
            }],
            "egress": [
                {
                    "name": "out-0",
                    "action": "Deny",
                    "to": [{"networks": ["10.0.0.0/8", "fd00::/8"]}, {"nodes": {}}],
                    "protocols": [{"udp": {"destinationPort": {"range": {"start": 1, "end": 1024}}}}]
                },
                {
                    "action": "Pass",
                    "to": [{"pods": {"podSelector": {}}}],
                    "protocols": [{"destinationNamedPort": "web"}]
                },
                {
                    "action": "Accept",
                    "to": [{"domainNames": ["example.com", "*.example.org"]}]
                }
            ]
        }),
    )
}

/// One edit of [`rich`]: a JSON pointer and the new value there (`None`
/// removes the key).
type Edit = (&'static str, Option<Value>);

/// One case per rule of the CRD (and the generic name rule), each an edit
/// (or two) of [`rich`].
fn rule_cases() -> Vec<(&'static str, Vec<Edit>)> {
    let long = |n: usize| Value::from("x".repeat(n));
    let many = |v: Value, n: usize| Value::Array(vec![v; n]);
    let rule = json!({"action": "Deny", "from": [{"namespaces": {}}]});
    vec![
        ("valid", vec![]),
        ("name not a DNS subdomain", vec![("/metadata/name", Some(json!("Bad_Name")))]),
        ("name too long", vec![("/metadata/name", Some(long(254)))]),
        ("no spec", vec![("/spec", None)]),
        ("no tier", vec![("/spec/tier", None)]),
        ("tier lower case", vec![("/spec/tier", Some(json!("admin")))]),
        ("tier a number", vec![("/spec/tier", Some(json!(1)))]),
        ("no priority", vec![("/spec/priority", None)]),
        ("priority -1", vec![("/spec/priority", Some(json!(-1)))]),
        ("priority 1001", vec![("/spec/priority", Some(json!(1001)))]),
        ("priority 1000", vec![("/spec/priority", Some(json!(1000)))]),
        ("priority 0", vec![("/spec/priority", Some(json!(0)))]),
        ("priority a string", vec![("/spec/priority", Some(json!("5")))]),
        ("no subject", vec![("/spec/subject", None)]),
        ("subject empty", vec![("/spec/subject", Some(json!({})))]),
        ("subject both", vec![("/spec/subject", Some(json!({"namespaces": {}, "pods": {"podSelector": {}}})))]),
        ("subject pods without podSelector", vec![("/spec/subject", Some(json!({"pods": {"namespaceSelector": {}}})))]),
        ("subject pods without namespaceSelector", vec![("/spec/subject", Some(json!({"pods": {"podSelector": {}}})))]),
        ("expression without operator", vec![("/spec/subject", Some(json!({"namespaces": {"matchExpressions": [{"key": "a"}]}})))]),
        ("expression without key", vec![("/spec/subject", Some(json!({"namespaces": {"matchExpressions": [{"operator": "Exists"}]}})))]),
        ("bad operator (nftpol only)", vec![("/spec/subject", Some(json!({"namespaces": {"matchExpressions": [{"key": "a", "operator": "Equals"}]}})))]),
        ("bad label key (nftpol only)", vec![("/spec/ingress/0/from/0/namespaces", Some(json!({"matchLabels": {"bad key": "x"}})))]),
        ("ingress empty", vec![("/spec/ingress", Some(json!([])))]),
        ("ingress 26 rules", vec![("/spec/ingress", Some(many(rule.clone(), 26)))]),
        ("ingress 25 rules", vec![("/spec/ingress", Some(many(rule, 25)))]),
        ("no action", vec![("/spec/ingress/0/action", None)]),
        ("action Allow", vec![("/spec/ingress/0/action", Some(json!("Allow")))]),
        ("action lower case", vec![("/spec/egress/1/action", Some(json!("pass")))]),
        ("no from", vec![("/spec/ingress/0/from", None)]),
        ("from empty", vec![("/spec/ingress/0/from", Some(json!([])))]),
        ("from 26", vec![("/spec/ingress/0/from", Some(many(json!({"namespaces": {}}), 26)))]),
        ("no to", vec![("/spec/egress/0/to", None)]),
        ("to empty", vec![("/spec/egress/0/to", Some(json!([])))]),
        ("rule name 100", vec![("/spec/ingress/0/name", Some(long(100)))]),
        ("rule name 101", vec![("/spec/ingress/0/name", Some(long(101)))]),
        ("protocols empty", vec![("/spec/ingress/0/protocols", Some(json!([])))]),
        ("protocols 26", vec![("/spec/ingress/0/protocols", Some(many(json!({"tcp": {"destinationPort": {"number": 1}}}), 26)))]),
        ("protocol empty", vec![("/spec/ingress/0/protocols/0", Some(json!({})))]),
        ("protocol two", vec![("/spec/ingress/0/protocols/0", Some(json!({"tcp": {"destinationPort": {"number": 1}}, "udp": {"destinationPort": {"number": 1}}})))]),
        ("tcp empty", vec![("/spec/ingress/0/protocols/0", Some(json!({"tcp": {}})))]),
        ("destinationPort empty", vec![("/spec/ingress/0/protocols/0/tcp/destinationPort", Some(json!({})))]),
        ("destinationPort both", vec![("/spec/ingress/0/protocols/0/tcp/destinationPort", Some(json!({"number": 1, "range": {"start": 1, "end": 2}})))]),
        ("port 0", vec![("/spec/ingress/0/protocols/0/tcp/destinationPort/number", Some(json!(0)))]),
        ("port 65536", vec![("/spec/ingress/0/protocols/0/tcp/destinationPort/number", Some(json!(65536)))]),
        ("port 65535", vec![("/spec/ingress/0/protocols/0/tcp/destinationPort/number", Some(json!(65535)))]),
        ("range start = end", vec![("/spec/egress/0/protocols/0/udp/destinationPort/range", Some(json!({"start": 5, "end": 5})))]),
        ("range start > end", vec![("/spec/egress/0/protocols/0/udp/destinationPort/range", Some(json!({"start": 6, "end": 5})))]),
        ("range without end", vec![("/spec/egress/0/protocols/0/udp/destinationPort/range", Some(json!({"start": 6})))]),
        ("range start 0", vec![("/spec/egress/0/protocols/0/udp/destinationPort/range", Some(json!({"start": 0, "end": 5})))]),
        ("range end 65536 and start > end", vec![("/spec/egress/0/protocols/0/udp/destinationPort/range", Some(json!({"start": 70000, "end": 65536})))]),
        ("range 1-65535", vec![("/spec/egress/0/protocols/0/udp/destinationPort/range", Some(json!({"start": 1, "end": 65535})))]),
        ("peer empty", vec![("/spec/egress/0/to/1", Some(json!({})))]),
        ("peer two", vec![("/spec/egress/0/to/1", Some(json!({"nodes": {}, "namespaces": {}})))]),
        ("ingress peer two", vec![("/spec/ingress/0/from/0", Some(json!({"pods": {"podSelector": {}}, "namespaces": {}})))]),
        ("ingress peer networks (unknown field)", vec![("/spec/ingress/0/from/0", Some(json!({"networks": ["10.0.0.0/8"]})))]),
        ("networks empty", vec![("/spec/egress/0/to/0/networks", Some(json!([])))]),
        ("networks duplicate", vec![("/spec/egress/0/to/0/networks", Some(json!(["10.0.0.0/8", "10.0.0.0/8"])))]),
        ("networks 26", vec![("/spec/egress/0/to/0/networks", Some(Value::Array((0..26).map(|i| json!(format!("10.{i}.0.0/16"))).collect())))]),
        ("network too long", vec![("/spec/egress/0/to/0/networks", Some(json!(["1111:2222:3333:4444:5555:6666:7777:8888/128"])))]),
        ("network too long and bad", vec![("/spec/egress/0/to/0/networks", Some(json!(["1111:2222:3333:4444:5555:6666:7777:8888/1288"])))]),
        ("named port with networks", vec![("/spec/egress/0/protocols", Some(json!([{"destinationNamedPort": "web"}])))]),
        ("named port with nodes", vec![("/spec/egress/1/to", Some(json!([{"nodes": {}}])))]),
        ("named port with domainNames", vec![("/spec/egress/1/to", Some(json!([{"domainNames": ["a.io"]}])))]),
        ("named port with pods and networks", vec![("/spec/egress/1/to", Some(json!([{"pods": {"podSelector": {}}}, {"networks": ["0.0.0.0/0"]}])))]),
        ("named port on ingress", vec![("/spec/ingress/0/protocols", Some(json!([{"destinationNamedPort": "web"}])))]),
        ("named port oddly spelt", vec![("/spec/egress/1/protocols/0/destinationNamedPort", Some(json!("Not A_port!")))]),
        ("domainNames empty", vec![("/spec/egress/2/to/0/domainNames", Some(json!([])))]),
        ("domainNames duplicate", vec![("/spec/egress/2/to/0/domainNames", Some(json!(["a.io", "a.io"])))]),
        ("domainName single label", vec![("/spec/egress/2/to/0/domainNames", Some(json!(["localhost"])))]),
        ("domainName inner wildcard", vec![("/spec/egress/2/to/0/domainNames", Some(json!(["a.*.io"])))]),
        ("domainName A-z typo", vec![("/spec/egress/2/to/0/domainNames", Some(json!(["_x.io", "[a.io", "a.b."])))]),
        ("unknown spec field", vec![("/spec/priorty", Some(json!(1)))]),
        ("unknown rule field", vec![("/spec/egress/0/port", Some(json!([])))]),
        ("unknown selector field", vec![("/spec/subject/namespaces/matchLabel", Some(json!({})))]),
        ("v1alpha1 peer shape", vec![("/spec/ingress/0/from/0/namespaces", Some(json!({"namespaceSelector": {}})))]),
        ("blocking and CEL", vec![("/spec/tier", Some(json!("Middle"))), ("/spec/egress/0/to/0/networks", Some(json!(["nope"])))]),
        ("minItems and CEL", vec![("/spec/ingress/0/protocols", Some(json!([]))), ("/spec/egress/0/to/0/networks", Some(json!(["nope"])))]),
        ("status without conditions", vec![("/status", Some(json!({})))]),
        ("status with a condition", vec![("/status", Some(json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ok", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})))]),
        ("null tier", vec![("/spec/tier", Some(Value::Null))]),
        ("null ingress", vec![("/spec/ingress", Some(Value::Null))]),
    ]
    .into_iter()
    .chain(CIDRS.iter().map(|c| {
        let edit: Edit = ("/spec/egress/0/to/0/networks", Some(json!([c])));
        ("a CIDR", vec![edit])
    }))
    .collect()
}

/// CIDR strings for `isCIDR`, both sides of every rule it might apply.
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "10.0.0.1/8",
    "10.0.0.0/32",
    "10.0.0.0/33",
    "010.0.0.0/8",
    "10.0.0.0/08",
    "10.0.0.0/+8",
    "10.0.0.0",
    "10.0.0/8",
    "::/0",
    "2001:db8::1/32",
    "2001:DB8::/32",
    "2001:0db8::/32",
    "::ffff:10.0.0.0/104",
    "::ffff:10.0.0.0/96",
    "fe80::1%eth0/64",
    "::/129",
    "0.0.0.0/0",
    " 10.0.0.0/8",
    "10.0.0.0/8 ",
    "garbage",
    "",
    "1.2.3.4/032",
    "::1/0128",
];

fn apply_edits(mut object: Value, edits: &[Edit]) -> Value {
    for (at, value) in edits {
        let (parent, key) = at.rsplit_once('/').unwrap();
        let parent = if parent.is_empty() {
            &mut object
        } else {
            object.pointer_mut(parent).unwrap_or_else(|| panic!("{at}"))
        };
        match (parent, value) {
            (Value::Object(m), Some(v)) => {
                m.insert(key.to_string(), v.clone());
            }
            (Value::Object(m), None) => {
                m.remove(key);
            }
            (Value::Array(a), Some(v)) => a[key.parse::<usize>().unwrap()] = v.clone(),
            (Value::Array(a), None) => {
                a.remove(key.parse::<usize>().unwrap());
            }
            _ => panic!("{at}"),
        }
    }
    object
}

fn rule_items() -> Vec<Item> {
    rule_cases()
        .into_iter()
        .enumerate()
        .map(|(i, (what, edits))| {
            let mut object = apply_edits(rich(), &edits);
            if !edits.iter().any(|(at, _)| at.starts_with("/metadata")) {
                object["metadata"]["name"] = json!(format!("rule-{i:03}"));
            }
            Item {
                origin: format!("rule case {i} ({what})"),
                object,
            }
        })
        .collect()
}

// ------------------------------------------------------------- the generator

const GOOD_NETWORKS: &[&str] = &[
    "10.0.0.0/8",
    "192.168.1.0/24",
    "0.0.0.0/0",
    "::/0",
    "fd00::/8",
    "2001:db8::/32",
    "10.0.0.1/8",
    "1.2.3.4/32",
];
const GOOD_DOMAINS: &[&str] = &["example.com", "*.example.org", "a.b.c.", "kubernetes.io"];
const BAD_DOMAINS: &[&str] = &[
    "localhost",
    "*.",
    "a..b",
    "-a.io",
    "a-.io",
    "*a.io",
    "a.*.io",
    "",
];
const GOOD_PORT_NAMES_CNP: &[&str] = &["web", "dns", "http-alt"];

impl Gen {
    fn cnp_selector(&mut self) -> Value {
        if self.bad() && self.rng.pct(50) {
            // The CRD's own rule: key and operator required.
            return json!({"matchExpressions": [{"key": "a"}]});
        }
        self.selector()
    }

    fn namespaced_pod(&mut self) -> Value {
        let mut m = Map::new();
        if self.rng.pct(60) {
            m.insert("namespaceSelector".into(), self.cnp_selector());
        }
        if !self.bad() {
            m.insert("podSelector".into(), self.cnp_selector());
        }
        Value::Object(m)
    }

    fn one_of(
        &mut self,
        fields: Vec<(&str, Value)>,
        extra: impl Fn(&mut Self) -> (String, Value),
    ) -> Value {
        let mut m = Map::new();
        if self.bad() && self.rng.pct(40) {
            return Value::Object(m);
        }
        let (k, v) = fields[self.rng.below(fields.len())].clone();
        m.insert(k.to_string(), v);
        if self.bad() {
            let (k, v) = extra(self);
            m.insert(k, v);
        }
        Value::Object(m)
    }

    fn networks(&mut self) -> Value {
        let n = if self.bad() {
            self.rng.pick(&[0, 26])
        } else {
            1 + self.rng.below(3)
        };
        let mut v: Vec<Value> = (0..n)
            .map(|i| {
                if n > 20 {
                    json!(format!("10.{i}.0.0/16"))
                } else if self.bad() {
                    json!(self.rng.pick(CIDRS))
                } else {
                    json!(self.rng.pick(GOOD_NETWORKS))
                }
            })
            .collect();
        v.dedup();
        if self.bad() && !v.is_empty() {
            v.push(v[0].clone());
        }
        Value::Array(v)
    }

    fn domains(&mut self) -> Value {
        let mut v: Vec<Value> = (0..1 + self.rng.below(2))
            .map(|_| {
                json!(if self.bad() {
                    self.rng.pick(BAD_DOMAINS)
                } else {
                    self.rng.pick(GOOD_DOMAINS)
                })
            })
            .collect();
        v.dedup();
        Value::Array(v)
    }

    fn cnp_peer(&mut self, egress: bool) -> Value {
        let ns = self.cnp_selector();
        let pods = self.namespaced_pod();
        let mut fields = vec![("namespaces", ns), ("pods", pods)];
        if egress {
            // Mostly pods and namespaces, so named ports stay valid often.
            if self.rng.pct(40) {
                let nodes = self.cnp_selector();
                let nets = self.networks();
                fields.push(("nodes", nodes));
                fields.push(("networks", nets));
                if self.rng.pct(30) {
                    let d = self.domains();
                    fields.push(("domainNames", d));
                }
            }
        }
        self.one_of(fields, |g| ("namespaces".into(), g.selector()))
    }

    fn port_number(&mut self) -> i64 {
        if self.bad() {
            self.rng.pick(&[0, -1, 65536, 100_000])
        } else {
            self.rng.pick(&[1, 53, 80, 443, 8080, 65535])
        }
    }

    fn cnp_protocol(&mut self, named_ok: bool) -> Value {
        let dest = if self.rng.pct(60) {
            let n = self.port_number();
            json!({"number": n})
        } else {
            let start = self.port_number();
            let end = if self.bad() {
                self.rng.pick(&[start, start - 1, 70000])
            } else {
                (start + self.rng.pick(&[1, 100, 1000])).min(65535)
            };
            if start >= 65535 && !self.bad() {
                json!({"range": {"start": 1, "end": 65535}})
            } else if self.bad() && self.rng.pct(30) {
                json!({"range": {"start": start}})
            } else {
                json!({"range": {"start": start, "end": end}})
            }
        };
        let dest = if self.bad() {
            self.rng.pick(&[
                json!({}),
                json!({"number": 80, "range": {"start": 1, "end": 2}}),
            ])
        } else {
            dest
        };
        let ports = if self.bad() {
            json!({})
        } else {
            json!({"destinationPort": dest})
        };
        let mut fields = vec![
            ("tcp", ports.clone()),
            ("udp", ports.clone()),
            ("sctp", ports),
        ];
        if named_ok || self.bad() {
            fields.push((
                "destinationNamedPort",
                json!(self.rng.pick(GOOD_PORT_NAMES_CNP)),
            ));
        }
        self.one_of(fields, |g| {
            (
                "udp".into(),
                json!({"destinationPort": {"number": g.port_number()}}),
            )
        })
    }

    fn cnp_rule(&mut self, egress: bool) -> Value {
        let mut r = Map::new();
        if self.rng.pct(50) {
            let name = if self.bad() {
                "x".repeat(101)
            } else {
                format!("rule-{}", self.rng.below(100))
            };
            r.insert("name".into(), json!(name));
        }
        if !self.bad() {
            let a = if self.bad() {
                self.rng.pick(&["Allow", "accept", ""])
            } else {
                self.rng.pick(&["Accept", "Deny", "Pass"])
            };
            r.insert("action".into(), json!(a));
        }
        let key = if egress { "to" } else { "from" };
        let n = if self.bad() {
            self.rng.pick(&[0, 26])
        } else {
            1 + self.rng.below(3)
        };
        if !(self.bad() && self.rng.pct(30)) {
            let peers: Vec<Value> = (0..n).map(|_| self.cnp_peer(egress)).collect();
            r.insert(key.into(), Value::Array(peers));
        }
        let non_pod = r.get(key).and_then(Value::as_array).is_some_and(|ps| {
            ps.iter().any(|p| {
                p.get("networks")
                    .or(p.get("nodes"))
                    .or(p.get("domainNames"))
                    .is_some()
            })
        });
        if self.rng.pct(60) {
            let n = if self.bad() {
                self.rng.pick(&[0, 26])
            } else {
                1 + self.rng.below(3)
            };
            let named_ok = !(egress && non_pod);
            let ps: Vec<Value> = (0..n).map(|_| self.cnp_protocol(named_ok)).collect();
            r.insert("protocols".into(), Value::Array(ps));
        }
        Value::Object(r)
    }

    fn cnp_rules(&mut self, egress: bool) -> Option<Value> {
        if self.rng.pct(30) {
            return None;
        }
        let n = if self.bad() && self.rng.pct(20) {
            26
        } else {
            self.rng.below(4)
        };
        Some(Value::Array(
            (0..n).map(|_| self.cnp_rule(egress)).collect(),
        ))
    }

    fn cluster_policy(&mut self, i: usize) -> Value {
        // Most policies make a wrong choice rarely or never.
        self.bad = self.rng.pick(&[0, 0, 0, 0, 1, 2, 4, 8]);
        let mut spec = Map::new();
        if !self.bad() {
            let t = if self.bad() {
                self.rng.pick(&["admin", "Middle"])
            } else {
                self.rng.pick(&["Admin", "Baseline"])
            };
            spec.insert("tier".into(), json!(t));
        }
        if !self.bad() {
            let p: i64 = if self.bad() {
                self.rng.pick(&[-1, 1001, 100_000])
            } else {
                self.rng.pick(&[0, 1, 10, 500, 1000])
            };
            spec.insert("priority".into(), json!(p));
        }
        if !self.bad() {
            let ns = self.cnp_selector();
            let pods = self.namespaced_pod();
            let s = self.one_of(vec![("namespaces", ns), ("pods", pods)], |g| {
                ("pods".into(), json!({"podSelector": g.selector()}))
            });
            spec.insert("subject".into(), s);
        }
        if let Some(r) = self.cnp_rules(false) {
            spec.insert("ingress".into(), r);
        }
        if let Some(r) = self.cnp_rules(true) {
            spec.insert("egress".into(), r);
        }
        let name = if self.bad() {
            self.rng.pick(BAD_NAMES).to_string()
        } else {
            format!("c-{i:05}")
        };
        let mut object = cnp(&name, Value::Object(spec));
        if self.bad > 0 && self.rng.pct(4) {
            super::misspell(&mut object, CNP_MISSPELT, &mut self.rng);
        }
        object
    }
}

const CNP_MISSPELT: &[(&str, &str)] = &[
    ("/spec", "priorty"),
    ("/spec", "ingres"),
    ("/spec/subject", "namespace"),
    ("/metadata", "label"),
    ("/spec/ingress/0", "form"),
    ("/spec/egress/0", "protocol"),
    ("/spec/egress/0/to/0", "network"),
];

fn random_cnps(seed: u64, n: usize) -> Vec<Item> {
    random_items(seed, n, "random CNP", Gen::cluster_policy)
}

// ------------------------------------------------------------- the verdicts

/// nftpol's verdict on a CNP, the documented exceptions left out; whether
/// there was one; the messages.
fn nftpol_cnp_verdict(object: &Value) -> (Verdict, bool, Vec<String>) {
    let text = serde_json::to_string(object).unwrap();
    let mut objs = Objects::default();
    let mut diags = Vec::new();
    parse_into(&text, "input", &mut objs, &mut diags);
    let unknown: BTreeSet<String> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error && d.message.starts_with("unknown field"))
        .map(|d| d.field.clone().unwrap_or_default())
        .collect();
    for (src, c) in &objs.cluster_policies {
        convert::cluster_policy(c, Some(src), &mut diags);
    }
    let exception =
        |m: &str| m.contains(convert::SELECTOR_MARK) || m.contains(convert::UNSUPPORTED_MARK);
    let errors: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let excepted = errors.iter().any(|d| exception(&d.message));
    let counted: Vec<_> = errors.iter().filter(|d| !exception(&d.message)).collect();
    let messages = errors.iter().map(|d| d.to_string()).collect();
    let verdict = if !unknown.is_empty() {
        Verdict::Unknown(unknown)
    } else if counted.is_empty() {
        Verdict::Valid
    } else {
        let mut fields: BTreeSet<String> = counted
            .iter()
            // A cause without a path is `<nil>` in the server's status.
            .map(|d| d.field.clone().unwrap_or_else(|| "<nil>".into()))
            .collect();
        if objs.cluster_policies.is_empty() {
            // Not decoded: a wrong type or a missing `spec`, both errors the
            // server counts as blocking, so it adds its `<nil>` cause
            // (conversion adds it for the ones it finds).
            fields.insert("<nil>".into());
        }
        Verdict::Invalid(fields)
    };
    (verdict, excepted, messages)
}

/// Dry-run creates every item against the CRD installed now.
fn ask_server_cnps(cp: &ControlPlane, items: &[Item]) -> Vec<(Verdict, Vec<String>)> {
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
        // The resource is served shortly after the CRD is established.
        let probe = cnp(
            "probe",
            json!({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}}}),
        );
        let t = Instant::now();
        loop {
            let (code, body) = post(&client, CNP_PATH, &probe).await;
            if code == 201 || code == 200 {
                break;
            }
            assert!(
                t.elapsed().as_secs() < 60,
                "ClusterNetworkPolicy not served: HTTP {code}: {}",
                String::from_utf8_lossy(&body)
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        futures::stream::iter(items)
            .map(|item| {
                let client = client.clone();
                async move {
                    let (code, body) = post(&client, CNP_PATH, &item.object).await;
                    server_verdict(code, &body)
                }
            })
            .buffered(CONCURRENCY)
            .collect()
            .await
    })
}

/// Installs a CRD file and waits until it is established.
fn install_crd(cp: &ControlPlane, path: &Path) {
    cp.kubectl_ok(&["create", "-f", path.to_str().unwrap()]);
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        CRD_NAME,
    ]);
}

/// Deletes the CRD and waits until it is gone.
fn delete_crd(cp: &ControlPlane) {
    cp.kubectl_ok(&["delete", CRD_NAME, "--wait=true", "--timeout=60s"]);
    let t = Instant::now();
    while cp.kubectl(&["get", CRD_NAME]).status.success() {
        assert!(t.elapsed().as_secs() < 60, "the CRD is not deleted");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn cluster_network_policies_validate_as_the_api_server_and_upstreams_crd_do() {
    ensure_binaries();
    let t0 = Instant::now();
    let seed: u64 = env_or("NFTPOL_VALIDITY_CNP_SEED", CNP_SEED);
    let n: usize = env_or("NFTPOL_VALIDITY_CNPS", CNP_COUNT);
    let mut skipped = Vec::new();
    let examples = example_items(&mut skipped);
    let rules = rule_items();
    let random = random_cnps(seed, n);
    let groups = [
        ("upstream examples", examples.len()),
        ("rule cases", rules.len()),
        ("random", random.len()),
    ];
    let items: Vec<Item> = examples.into_iter().chain(rules).chain(random).collect();
    println!(
        "seed {seed:#x} (NFTPOL_VALIDITY_CNP_SEED), {n} random ClusterNetworkPolicies (NFTPOL_VALIDITY_CNPS); example files that are not YAML, skipped: {skipped:?}"
    );
    let upstream_crd = testdata().join("crd/cnp-crd-experimental.yaml");
    let our_crd = nftpol_testkit::cases::root().join("deploy/crd-clusternetworkpolicies.yaml");
    let (upstream, ours) = in_new_netns(|| {
        let cp = ControlPlane::start();
        install_crd(&cp, &upstream_crd);
        let t = Instant::now();
        let a = ask_server_cnps(&cp, &items);
        println!(
            "upstream CRD: {} dry-run creates in {:.1} s",
            items.len(),
            t.elapsed().as_secs_f64()
        );
        delete_crd(&cp);
        install_crd(&cp, &our_crd);
        let t = Instant::now();
        let b = ask_server_cnps(&cp, &items);
        println!(
            "nftpol's CRD: {} dry-run creates in {:.1} s",
            items.len(),
            t.elapsed().as_secs_f64()
        );
        (a, b)
    });

    let mut disagreements = Vec::new();
    let mut crd_differences = Vec::new();
    let mut start = 0;
    for (name, len) in groups {
        // (accepted, rejected, unknown fields, agreements, documented exceptions)
        let mut s = [0usize; 5];
        for i in start..start + len {
            let item = &items[i];
            let (sv, smsgs) = &upstream[i];
            let (ov, omsgs) = &ours[i];
            let (nv, excepted, nmsgs) = nftpol_cnp_verdict(&item.object);
            match sv {
                Verdict::Valid => s[0] += 1,
                Verdict::Invalid(_) => s[1] += 1,
                Verdict::Unknown(_) => s[2] += 1,
                Verdict::Other(_) => {}
            }
            if excepted {
                s[4] += 1;
            }
            if *sv == nv {
                s[3] += 1;
            } else {
                disagreements.push(format!(
                    "{}:\n  object: {}\n  API server: {sv:?}\n    {}\n  nftpol: {nv:?}\n    {}",
                    item.origin,
                    item.object,
                    smsgs.join("\n    "),
                    nmsgs.join("\n    ")
                ));
            }
            if sv != ov {
                crd_differences.push(format!(
                    "{}:\n  object: {}\n  upstream CRD: {sv:?}\n    {}\n  nftpol's CRD: {ov:?}\n    {}",
                    item.origin,
                    item.object,
                    smsgs.join("\n    "),
                    omsgs.join("\n    ")
                ));
            }
        }
        println!(
            "{name}: {len} ClusterNetworkPolicies; API server accepted {}, rejected {} by validation, {} for unknown fields; nftpol agrees on {} ({} with a documented exception: a selector it cannot evaluate or domainNames)",
            s[0], s[1], s[2], s[3], s[4]
        );
        if name == "random" && n >= 1000 {
            assert!(
                s[0] > n / 4 && s[1] > n / 10 && s[2] > n / 200,
                "the random policies are too one-sided: {s:?} of {n}"
            );
        }
        start += len;
    }
    println!(
        "total: {} ClusterNetworkPolicies, {} disagreements with nftpol, {} between the CRDs; {:.1} s",
        items.len(),
        disagreements.len(),
        crd_differences.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        disagreements.is_empty() && crd_differences.is_empty(),
        "{} disagreements with the API server:\n\n{}\n\n{} differences between upstream's CRD and nftpol's:\n\n{}",
        disagreements.len(),
        disagreements.join("\n\n"),
        crd_differences.len(),
        crd_differences.join("\n\n")
    );
}
