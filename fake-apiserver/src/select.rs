//! Label and field selectors from list/watch query strings.
//!
//! Label selectors support the full string syntax except `<`/`>` (`a`, `!a`, `a=b`, `a==b`,
//! `a!=b`, `a in (b,c)`, `a notin (b,c)`). Field selectors accept any dotted path into the object
//! (a superset of the real server, which allows only a few fields per resource) with `=`, `==`,
//! `!=`; a missing field compares as the empty string, as in Kubernetes.

use serde_json::Value;

/// One parsed requirement.
#[derive(Debug, Clone, PartialEq)]
enum Req {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed labelSelector plus fieldSelector; the default matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    labels: Vec<Req>,
    fields: Vec<(Vec<String>, bool, String)>,
}

impl Selector {
    /// Parses both selectors; the error is the message of a 400 response.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, String> {
        let mut sel = Selector::default();
        for term in split_terms(labels.unwrap_or("")) {
            sel.labels.push(parse_label_term(&term)?);
        }
        for term in split_terms(fields.unwrap_or("")) {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (p, true, v)
            } else {
                return Err(format!("invalid field selector term {term:?}"));
            };
            let path = path.trim().split('.').map(str::to_string).collect();
            sel.fields.push((path, equal, value.trim().to_string()));
        }
        Ok(sel)
    }

    /// Whether `obj` satisfies every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|req| match req {
            Req::Exists(k) => label(k).is_some(),
            Req::NotExists(k) => label(k).is_none(),
            Req::In(k, vs) => label(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            // As in Kubernetes, NotIn and != match objects without the label.
            Req::NotIn(k, vs) => label(k).is_none_or(|v| vs.iter().all(|x| x != v)),
        });
        labels_ok
            && self.fields.iter().all(|(path, equal, want)| {
                let got = path.iter().try_fold(obj, |v, seg| v.get(seg));
                let got = match got {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                };
                (got == *want) == *equal
            })
    }
}

/// Splits on commas that are not inside parentheses; drops empty terms.
fn split_terms(s: &str) -> Vec<String> {
    let (mut terms, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    terms.push(cur);
    terms
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Parses one label requirement.
fn parse_label_term(term: &str) -> Result<Req, String> {
    let bad = || format!("invalid label selector term {term:?}");
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Req::NotExists(key.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Req::NotIn(k.trim().into(), vec![v.trim().into()]));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Req::In(k.trim().into(), vec![v.trim().into()]));
    }
    if let Some(open) = term.find('(') {
        let mut words = term[..open].split_whitespace();
        let (key, op) = (words.next().ok_or_else(bad)?, words.next().ok_or_else(bad)?);
        let inner = term[open + 1..].strip_suffix(')').ok_or_else(bad)?;
        let values = inner.split(',').map(|v| v.trim().to_string()).collect();
        return match op {
            "in" => Ok(Req::In(key.into(), values)),
            "notin" => Ok(Req::NotIn(key.into(), values)),
            _ => Err(bad()),
        };
    }
    if term.contains(['<', '>', ' ']) {
        return Err(bad());
    }
    Ok(Req::Exists(term.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_match_like_kubernetes() {
        let pod = json!({
            "metadata": {"name": "a", "labels": {"app": "web", "tier": "front"}},
            "spec": {"nodeName": "n1"},
        });
        let cases = [
            ("", "", true, "empty selectors match everything"),
            ("app=web", "", true, "equality"),
            (
                "app==web,tier=front",
                "",
                true,
                "double equals, conjunction",
            ),
            ("app!=web", "", false, "inequality"),
            ("missing!=x", "", true, "!= matches a missing label"),
            ("app in (db, web)", "", true, "set membership"),
            ("app notin (web)", "", false, "set exclusion"),
            (
                "missing notin (x)",
                "",
                true,
                "notin matches a missing label",
            ),
            ("app", "", true, "existence"),
            ("!app", "", false, "non-existence"),
            ("", "spec.nodeName=n1", true, "field equality"),
            ("", "spec.nodeName!=n1", false, "field inequality"),
            (
                "",
                "metadata.name=a,spec.nodeName==n1",
                true,
                "field conjunction",
            ),
            (
                "",
                "status.podIP=",
                true,
                "a missing field is the empty string",
            ),
        ];
        for (labels, fields, want, msg) in cases {
            let sel = Selector::parse(Some(labels), Some(fields)).unwrap();
            assert_eq!(sel.matches(&pod), want, "{msg}: {labels:?} {fields:?}");
        }
        assert!(
            Selector::parse(Some("a > 1"), None).is_err(),
            "gt is unsupported"
        );
    }
}
