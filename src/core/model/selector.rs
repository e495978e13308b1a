//! Label selectors with exact Kubernetes semantics.
//!
//! `matchLabels` and `matchExpressions` are normalised into one sorted list of
//! requirements, so two selectors that mean the same thing compare equal and
//! share one nftables set.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Labels of a pod or namespace.
pub type Labels = BTreeMap<String, String>;

/// One requirement of a selector; all requirements of a selector are ANDed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Requirement {
    /// The key is present and its value is one of the values.
    In(String, BTreeSet<String>),
    /// The key is absent, or present with a value not in the values.
    NotIn(String, BTreeSet<String>),
    /// The key is present (any value).
    Exists(String),
    /// The key is absent.
    DoesNotExist(String),
}

impl Requirement {
    /// The label key this requirement looks at.
    pub fn key(&self) -> &str {
        match self {
            Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::DoesNotExist(k) => k,
        }
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A label selector. The empty selector selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    reqs: Vec<Requirement>,
}

impl Selector {
    /// The selector that selects everything (`{}`).
    pub fn everything() -> Self {
        Self::default()
    }

    /// Builds a canonical selector: requirements sorted and deduplicated.
    pub fn new(mut reqs: Vec<Requirement>) -> Self {
        reqs.sort();
        reqs.dedup();
        Selector { reqs }
    }

    /// Builds a selector from `matchLabels` alone.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::new(
            labels
                .into_iter()
                .map(|(k, v)| Requirement::In(k.to_string(), BTreeSet::from([v.to_string()])))
                .collect(),
        )
    }

    /// Whether this selector selects everything.
    pub fn is_everything(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The requirements, in canonical order.
    pub fn requirements(&self) -> &[Requirement] {
        &self.reqs
    }

    /// Whether a label set is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.reqs.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Selector {
    /// Kubernetes' own selector syntax (`app=a,tier in (x,y),!legacy`); `{}` selects all.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reqs.is_empty() {
            return f.write_str("{}");
        }
        for (i, r) in self.reqs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let join = |vs: &BTreeSet<String>| vs.iter().cloned().collect::<Vec<_>>().join(",");
            match r {
                Requirement::In(k, vs) if vs.len() == 1 => write!(f, "{k}={}", join(vs))?,
                Requirement::In(k, vs) => write!(f, "{k} in ({})", join(vs))?,
                Requirement::NotIn(k, vs) => write!(f, "{k} notin ({})", join(vs))?,
                Requirement::Exists(k) => write!(f, "{k}")?,
                Requirement::DoesNotExist(k) => write!(f, "!{k}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn set(vs: &[&str]) -> BTreeSet<String> {
        vs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn selector_semantics_table() {
        use Requirement::*;
        let k = || "app".to_string();
        // (requirements, labels, expected, why)
        let rows: Vec<(Vec<Requirement>, Labels, bool, &str)> = vec![
            (
                vec![],
                labels(&[]),
                true,
                "empty selector selects a pod with no labels",
            ),
            (
                vec![],
                labels(&[("a", "b")]),
                true,
                "empty selector selects everything",
            ),
            (
                vec![In(k(), set(&["web"]))],
                labels(&[("app", "web")]),
                true,
                "In: value listed",
            ),
            (
                vec![In(k(), set(&["web"]))],
                labels(&[("app", "db")]),
                false,
                "In: value not listed",
            ),
            (
                vec![In(k(), set(&["web"]))],
                labels(&[]),
                false,
                "In: missing key never matches",
            ),
            (
                vec![In(k(), set(&["web", "db"]))],
                labels(&[("app", "db")]),
                true,
                "In: any listed value",
            ),
            (
                vec![NotIn(k(), set(&["web"]))],
                labels(&[("app", "db")]),
                true,
                "NotIn: other value",
            ),
            (
                vec![NotIn(k(), set(&["web"]))],
                labels(&[("app", "web")]),
                false,
                "NotIn: listed value",
            ),
            (
                vec![NotIn(k(), set(&["web"]))],
                labels(&[]),
                true,
                "NotIn: a missing key matches",
            ),
            (
                vec![Exists(k())],
                labels(&[("app", "")]),
                true,
                "Exists: empty value still exists",
            ),
            (
                vec![Exists(k())],
                labels(&[("other", "x")]),
                false,
                "Exists: missing key",
            ),
            (
                vec![DoesNotExist(k())],
                labels(&[]),
                true,
                "DoesNotExist: missing key",
            ),
            (
                vec![DoesNotExist(k())],
                labels(&[("app", "x")]),
                false,
                "DoesNotExist: present key",
            ),
            (
                vec![In(k(), set(&["web"])), Exists("tier".into())],
                labels(&[("app", "web")]),
                false,
                "requirements are ANDed",
            ),
            (
                vec![In(k(), set(&["web"])), NotIn(k(), set(&["web"]))],
                labels(&[("app", "web")]),
                false,
                "contradictory requirements select nothing",
            ),
            (
                vec![In(k(), set(&["Web"]))],
                labels(&[("app", "web")]),
                false,
                "values are case-sensitive",
            ),
        ];
        for (reqs, l, want, why) in rows {
            let s = Selector::new(reqs);
            assert_eq!(s.matches(&l), want, "{why}: selector {s} on {l:?}");
        }
    }

    #[test]
    fn canonical_form_is_order_independent() {
        let a = Selector::from_labels([("a", "1"), ("b", "2")]);
        let b = Selector::new(vec![
            Requirement::In("b".into(), set(&["2"])),
            Requirement::In("a".into(), set(&["1"])),
            Requirement::In("a".into(), set(&["1"])),
        ]);
        assert_eq!(a, b, "matchLabels order and duplicates do not matter");
        assert_eq!(a.to_string(), "a=1,b=2");
    }

    #[test]
    fn display_uses_kubernetes_syntax() {
        let s = Selector::new(vec![
            Requirement::In("tier".into(), set(&["x", "y"])),
            Requirement::NotIn("env".into(), set(&["prod"])),
            Requirement::Exists("team".into()),
            Requirement::DoesNotExist("legacy".into()),
        ]);
        assert_eq!(s.to_string(), "tier in (x,y),env notin (prod),team,!legacy");
        assert_eq!(Selector::everything().to_string(), "{}");
    }
}
