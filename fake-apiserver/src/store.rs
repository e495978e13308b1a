//! The object store: objects, one global resourceVersion, a bounded event history and the live
//! watchers. Everything here is synchronous and runs under one mutex, so a change, its
//! resourceVersion and its delivery to every watcher are a single atomic step.

use crate::error::ApiError;
use crate::resources::{self, Resource};
use crate::select::Selector;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Objects are keyed by (plural, namespace, name); namespace is "" for cluster-scoped ones.
type Key = (&'static str, String, String);

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Deleted,
}

/// One change, as retained in the history and sent to watchers.
#[derive(Debug)]
pub struct Event {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// Which resource type changed.
    pub resource: &'static Resource,
    /// The object after the change; for a deletion, its last state stamped with the deletion's rv.
    pub object: Value,
    /// The object before the change, kept so lists can be rolled back to an older rv and
    /// selector watches can tell "stopped matching" from "never matched".
    pub prev: Option<Value>,
}

/// A registered watch: the events of one resource type (and namespace) go to `tx`.
#[derive(Debug)]
struct Watcher {
    resource: &'static Resource,
    namespace: Option<String>,
    tx: UnboundedSender<Arc<Event>>,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        std::ptr::eq(self.resource, ev.resource)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == namespace_of(&ev.object))
    }
}

/// Where a new watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFrom {
    /// Synthetic ADDED events for every current object first (resourceVersion "" or "0").
    Snapshot,
    /// Replay the history after this resourceVersion.
    After(u64),
    /// Only changes from now on.
    Now,
}

/// A registered watch.
#[derive(Debug)]
pub struct WatchStart {
    /// Events to send first (a snapshot or a replay).
    pub initial: Vec<Arc<Event>>,
    /// The resourceVersion the initial events bring the client to.
    pub rv: u64,
    /// Every later event of the watched type and namespace.
    pub events: UnboundedReceiver<Arc<Event>>,
}

/// The parameters of a list request that the store interprets.
#[derive(Debug, Default)]
pub struct ListQuery {
    /// `resourceVersion`, if given.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`, if given.
    pub version_match: Option<String>,
    /// `limit`; 0 means no limit.
    pub limit: usize,
    /// `continue`, if given.
    pub continue_token: Option<String>,
    /// labelSelector and fieldSelector.
    pub selector: Selector,
}

/// All state of the fake server; survives restarts of the HTTP side.
#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// Watches and exact lists from a resourceVersion below this are too old (410 Expired):
    /// the events after it are no longer all in the history.
    compacted: u64,
    watchers: Vec<Watcher>,
    created: u64,
}

/// The default number of events kept for watch replay and rolled-back lists.
pub const DEFAULT_HISTORY_LIMIT: usize = 1000;

impl Default for Store {
    fn default() -> Self {
        Store {
            // etcd revisions start at 1; starting there also keeps "0" meaning only "any".
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: DEFAULT_HISTORY_LIMIT,
            compacted: 0,
            watchers: Vec::new(),
            created: 0,
        }
    }
}

impl Store {
    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Keeps only the last `limit` events; older resourceVersions become "too old".
    pub fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit;
        self.trim_history();
    }

    /// Ends every open watch; clients see the stream close normally, as on a server timeout.
    pub fn close_watches(&mut self) {
        self.watchers.clear();
    }

    /// GET of one object.
    pub fn get(&self, res: &'static Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&(res.plural, ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(res.plural, name))
    }

    /// POST: creates `obj`. `path_ns` is the namespace from the URL; without it a namespaced
    /// object goes to its own metadata.namespace or "default".
    pub fn create(
        &mut self,
        res: &'static Resource,
        path_ns: Option<&str>,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        check_type(res, &mut obj)?;
        let ns = self.namespace_for(res, path_ns, &mut obj)?;
        if !meta_str(&obj, "resourceVersion").is_empty() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        self.created += 1;
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&obj, "generateName");
            if prefix.is_empty() {
                return Err(ApiError::invalid(format!(
                    "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    res.kind
                )));
            }
            name = format!("{prefix}{}", name_suffix(self.created));
        }
        if self
            .objects
            .contains_key(&(res.plural, ns.clone(), name.clone()))
        {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", res.plural),
            ));
        }
        let meta = &mut obj["metadata"];
        meta["name"] = json!(name);
        meta["uid"] = json!(format!("fa4e0000-0000-4000-8000-{:012x}", self.created));
        meta["creationTimestamp"] = json!(rfc3339_now());
        meta["generation"] = json!(1);
        Ok(self.commit(res, &ns, &name, Some(obj)))
    }

    /// PUT: replaces the object, or only its status when `status_only` (the /status
    /// subresource). A non-empty metadata.resourceVersion must be the current one (409).
    pub fn update(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        mut obj: Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let old = self.get(res, ns, name)?;
        check_type(res, &mut obj)?;
        let body_name = meta_str(&obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        self.namespace_for(res, (!ns.is_empty()).then_some(ns), &mut obj)?;
        let want_rv = meta_str(&obj, "resourceVersion");
        if !want_rv.is_empty() && want_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(res.plural, name));
        }
        let mut new = if status_only {
            let mut new = old.clone();
            match (obj.get("status"), new.as_object_mut()) {
                (Some(status), Some(fields)) => fields.insert("status".into(), status.clone()),
                (None, Some(fields)) => fields.remove("status"),
                (_, None) => None,
            };
            new
        } else {
            // System fields come from the stored object, whatever the client sent.
            for field in ["name", "uid", "creationTimestamp", "generation"] {
                obj["metadata"][field] = old["metadata"][field].clone();
            }
            obj
        };
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == old {
            // The real server skips no-op writes: no new resourceVersion, no watch event.
            return Ok(old);
        }
        if new.get("spec") != old.get("spec") {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        Ok(self.commit(res, ns, name, Some(new)))
    }

    /// DELETE: removes the object (and, for a namespace, everything in it) and returns its last
    /// state. `preconditions` is DeleteOptions.preconditions.
    pub fn delete(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        preconditions: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let old = self.get(res, ns, name)?;
        for field in ["uid", "resourceVersion"] {
            let want = preconditions
                .and_then(|p| p.get(field))
                .and_then(Value::as_str);
            if let Some(want) = want.filter(|w| *w != meta_str(&old, field)) {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Precondition failed: {field} in precondition: {want}, {field} in object meta: {}",
                        meta_str(&old, field)
                    ),
                ));
            }
        }
        if res.plural == "namespaces" {
            // The namespace controller would empty it first; do that at once.
            let inside: Vec<Key> = self
                .objects
                .keys()
                .filter(|(_, key_ns, _)| key_ns == name)
                .cloned()
                .collect();
            for (plural, key_ns, key_name) in inside {
                let inner = resources::RESOURCES.iter().find(|r| r.plural == plural);
                self.commit(
                    inner.expect("stored types are served"),
                    &key_ns,
                    &key_name,
                    None,
                );
            }
        }
        Ok(self.commit(res, ns, name, None))
    }

    /// LIST: a page of objects (in `namespace`, or all) as of one resourceVersion.
    pub fn list(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        q: &ListQuery,
    ) -> Result<Value, ApiError> {
        let requested = q.resource_version.as_deref().filter(|v| !v.is_empty());
        let (at, start_after) = match (&q.continue_token, requested, q.version_match.as_deref()) {
            (Some(token), None, _) => {
                let (rv, ns, name) = decode_continue(token)
                    .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
                if rv < self.compacted {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent \
                         list result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, Some((ns, name)))
            }
            (Some(_), Some(_), _) => {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            (None, None, None) | (None, Some("0"), None | Some("NotOlderThan")) => (self.rv, None),
            (None, None, Some(_)) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            (None, Some(rv), m @ (None | Some("NotOlderThan" | "Exact"))) => {
                let rv: u64 = rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?;
                if rv > self.rv {
                    return Err(ApiError::new(
                        504,
                        "Timeout",
                        format!("Too large resource version: {rv}, current: {}", self.rv),
                    ));
                }
                if m != Some("Exact") {
                    (self.rv, None)
                } else if rv == 0 || rv < self.compacted {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        self.compacted
                    )));
                } else {
                    (rv, None)
                }
            }
            (None, Some(_), Some(m)) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported resourceVersionMatch {m:?}"
                )));
            }
        };
        let mut matching = self
            .objects_at(res, at)
            .into_iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
            .filter(|(key, _)| start_after.as_ref().is_none_or(|after| key > after))
            .filter(|(_, obj)| q.selector.matches(obj));
        let limit = if q.limit == 0 { usize::MAX } else { q.limit };
        let mut items = Vec::new();
        let mut last = None;
        for (key, mut obj) in matching.by_ref().take(limit) {
            // The real server leaves kind and apiVersion off list items.
            if let Some(o) = obj.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            items.push(obj);
            last = Some(key);
        }
        let remaining = matching.count();
        let mut metadata = json!({"resourceVersion": at.to_string()});
        if remaining > 0 {
            let (ns, name) = last.expect("a full page has a last item");
            metadata["continue"] = json!(encode_continue(at, &ns, &name));
            metadata["remainingItemCount"] = json!(remaining);
        }
        Ok(json!({
            "kind": res.list_kind(),
            "apiVersion": res.api_version(),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// Registers a watch; too old a start is 410 Expired.
    pub fn watch(
        &mut self,
        res: &'static Resource,
        namespace: Option<&str>,
        from: WatchFrom,
    ) -> Result<WatchStart, ApiError> {
        let in_scope = |obj: &Value| namespace.is_none_or(|ns| ns == namespace_of(obj));
        let initial = match from {
            WatchFrom::Snapshot => self
                .objects_at(res, self.rv)
                .into_values()
                .filter(|o| in_scope(o))
                .map(|object| {
                    let rv = meta_str(&object, "resourceVersion").parse().unwrap_or(0);
                    let kind = EventType::Added;
                    Arc::new(Event {
                        rv,
                        kind,
                        resource: res,
                        object,
                        prev: None,
                    })
                })
                .collect(),
            WatchFrom::After(rv) if rv < self.compacted => {
                // The real server's watch cache wording; the client must relist.
                return Err(ApiError::expired(format!(
                    "too old resource version: {rv} ({})",
                    self.compacted
                )));
            }
            WatchFrom::After(rv) => self
                .history
                .iter()
                .filter(|e| e.rv > rv && std::ptr::eq(e.resource, res) && in_scope(&e.object))
                .cloned()
                .collect(),
            WatchFrom::Now => Vec::new(),
        };
        let (tx, rx) = unbounded_channel();
        let namespace = namespace.map(str::to_string);
        self.watchers.push(Watcher {
            resource: res,
            namespace,
            tx,
        });
        Ok(WatchStart {
            initial,
            rv: self.rv,
            events: rx,
        })
    }

    /// Writes (or, with `None`, deletes) one object under a new resourceVersion, records the
    /// event and hands it to the watchers. Returns the object as stored (or last seen).
    fn commit(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        new: Option<Value>,
    ) -> Value {
        self.rv += 1;
        let key = (res.plural, ns.to_string(), name.to_string());
        let prev = self.objects.remove(&key);
        let (kind, mut object) = match (new, &prev) {
            (Some(obj), None) => (EventType::Added, obj),
            (Some(obj), Some(_)) => (EventType::Modified, obj),
            (None, Some(old)) => (EventType::Deleted, old.clone()),
            (None, None) => unreachable!("callers check that a deleted object exists"),
        };
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if kind != EventType::Deleted {
            self.objects.insert(key, object.clone());
        }
        let ev = Arc::new(Event {
            rv: self.rv,
            kind,
            resource: res,
            object: object.clone(),
            prev,
        });
        // Dropping watchers whose stream has gone keeps the list from growing.
        self.watchers.retain(|w| {
            if w.wants(&ev) {
                w.tx.send(ev.clone()).is_ok()
            } else {
                !w.tx.is_closed()
            }
        });
        self.history.push_back(ev);
        self.trim_history();
        object
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.history_limit {
            let dropped = self.history.pop_front().expect("longer than the limit");
            self.compacted = dropped.rv;
        }
    }

    /// The objects of one type as they were at resourceVersion `rv`, found by undoing the
    /// retained events after it (callers check `rv >= self.compacted`).
    fn objects_at(&self, res: &'static Resource, rv: u64) -> BTreeMap<(String, String), Value> {
        let mut objects: BTreeMap<(String, String), Value> = self
            .objects
            .range((res.plural, String::new(), String::new())..)
            .take_while(|((plural, _, _), _)| *plural == res.plural)
            .map(|((_, ns, name), obj)| ((ns.clone(), name.clone()), obj.clone()))
            .collect();
        for ev in self.history.iter().rev().take_while(|e| e.rv > rv) {
            if !std::ptr::eq(ev.resource, res) {
                continue;
            }
            let key = (
                namespace_of(&ev.object).to_string(),
                meta_str(&ev.object, "name").to_string(),
            );
            match &ev.prev {
                Some(prev) => objects.insert(key, prev.clone()),
                None => objects.remove(&key),
            };
        }
        objects
    }

    /// The namespace an object goes to, checked against the URL's and fixed up in the object.
    fn namespace_for(
        &self,
        res: &'static Resource,
        path_ns: Option<&str>,
        obj: &mut Value,
    ) -> Result<String, ApiError> {
        if !res.namespaced {
            if let Some(meta) = obj["metadata"].as_object_mut() {
                meta.remove("namespace");
            }
            return Ok(String::new());
        }
        let body_ns = meta_str(obj, "namespace").to_string();
        let ns = match path_ns {
            Some(p) if !body_ns.is_empty() && body_ns != p => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            Some(p) => p.to_string(),
            None if body_ns.is_empty() => "default".to_string(),
            None => body_ns,
        };
        let ns_res = resources::lookup("namespaces").expect("namespaces are served");
        if self.get(ns_res, "", &ns).is_err() {
            return Err(ApiError::not_found("namespaces", &ns));
        }
        obj["metadata"]["namespace"] = json!(ns);
        Ok(ns)
    }
}

/// Fills in apiVersion/kind (as the real server defaults them from the URL) or rejects a
/// body meant for another type.
fn check_type(res: &'static Resource, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    for (field, want) in [
        ("apiVersion", res.api_version()),
        ("kind", res.kind.to_string()),
    ] {
        match obj.get(field).and_then(Value::as_str) {
            None | Some("") => obj[field] = json!(want),
            Some(got) if got == want => {}
            Some(got) => {
                return Err(ApiError::bad_request(format!(
                    "{field} {got:?} does not match the expected {want:?}"
                )));
            }
        }
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    Ok(())
}

/// A string field of metadata, or "".
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or("")
}

/// metadata.namespace, or "" for cluster-scoped objects.
fn namespace_of(obj: &Value) -> &str {
    meta_str(obj, "namespace")
}

/// Continue tokens are opaque to clients: hex of "rv NUL namespace NUL name".
fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    format!("{rv}\0{ns}\0{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Inverse of [`encode_continue`].
fn decode_continue(token: &str) -> Option<(u64, String, String)> {
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let mut parts = text.split('\0');
    let rv = parts.next()?.parse().ok()?;
    Some((rv, parts.next()?.to_string(), parts.next()?.to_string()))
}

/// A generateName suffix: five characters from the real server's alphabet, derived from a
/// counter so names are unique and tests deterministic.
fn name_suffix(n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// The current UTC time as RFC 3339 with seconds, like metav1.Time.
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to civil date, after Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(name: &str) -> &'static Resource {
        resources::lookup(name).unwrap()
    }

    fn store_with_ns() -> Store {
        let mut s = Store::default();
        s.create(res("ns"), None, json!({"metadata": {"name": "a"}}))
            .unwrap();
        s
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "ns", "name-1");
        assert_eq!(
            decode_continue(&t),
            Some((42, "ns".into(), "name-1".into()))
        );
        assert_eq!(decode_continue("zz"), None, "garbage is rejected");
    }

    #[test]
    fn exact_list_rolls_back_to_the_requested_version() {
        let mut s = store_with_ns();
        let pod = |v: &str| json!({"metadata": {"name": "p", "labels": {"v": v}}});
        s.create(res("pods"), Some("a"), pod("1")).unwrap();
        let rv1 = s.resource_version();
        s.update(res("pods"), "a", "p", pod("2"), false).unwrap();
        s.create(res("pods"), Some("a"), json!({"metadata": {"name": "q"}}))
            .unwrap();
        let q = ListQuery {
            resource_version: Some(rv1.to_string()),
            version_match: Some("Exact".into()),
            ..Default::default()
        };
        let list = s.list(res("pods"), Some("a"), &q).unwrap();
        assert_eq!(
            list["items"].as_array().unwrap().len(),
            1,
            "q did not exist yet"
        );
        assert_eq!(
            list["items"][0]["metadata"]["labels"]["v"], "1",
            "the old p"
        );
        assert_eq!(list["metadata"]["resourceVersion"], rv1.to_string());
        s.set_history_limit(0);
        let err = s.list(res("pods"), Some("a"), &q).unwrap_err();
        assert_eq!((err.code, err.reason), (410, "Expired"), "history is gone");
    }

    #[test]
    fn writes_keep_system_fields_and_skip_no_ops() {
        let mut s = store_with_ns();
        let p = s
            .create(
                res("pods"),
                Some("a"),
                json!({"metadata": {"name": "p"}, "spec": {}}),
            )
            .unwrap();
        let rv = s.resource_version();
        let same = s
            .update(
                res("pods"),
                "a",
                "p",
                json!({"metadata": {"name": "p"}, "spec": {}}),
                false,
            )
            .unwrap();
        assert_eq!(same, p, "a no-op update changes nothing");
        assert_eq!(s.resource_version(), rv, "and takes no resourceVersion");
        let err = s
            .create(
                res("pods"),
                Some("nope"),
                json!({"metadata": {"name": "p"}}),
            )
            .unwrap_err();
        assert_eq!(err.code, 404, "the namespace must exist");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}
