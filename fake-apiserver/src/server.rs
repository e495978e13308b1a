//! The HTTP side: routing, request decoding, JSON responses and streamed watches.
//!
//! Each running server owns one thread with a current-thread tokio runtime. Stopping drops that
//! runtime, which drops every connection and watch at once: clients see the server vanish
//! mid-stream, as in a real outage, while the store (shared with the handle) lives on.

use crate::error::ApiError;
use crate::patch;
use crate::resources::{self, Resource};
use crate::select::Selector;
use crate::store::{Event, EventType, ListQuery, Store, WatchFrom, WatchStart};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// State shared by the handle and every request.
#[derive(Debug)]
pub struct Shared {
    /// The objects and their history.
    pub store: Mutex<Store>,
    /// Every request line seen, "METHOD /path?query".
    pub requests: Mutex<Vec<String>>,
    /// How often open watches get a BOOKMARK (when they asked for bookmarks).
    pub bookmark_interval: Mutex<Duration>,
    /// Echo requests to stderr.
    pub log_requests: AtomicBool,
    /// The address served, for discovery's serverAddressByClientCIDRs.
    pub addr: SocketAddr,
}

impl Shared {
    /// Locks the store; a panic elsewhere must not wedge every later test step.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A serving thread; dropping it without [`Running::stop`] also stops it, but without waiting.
#[derive(Debug)]
pub struct Running {
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, drops every connection and waits for the thread to end.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Serves `listener` on a new thread until stopped.
pub fn spawn(shared: Arc<Shared>, listener: std::net::TcpListener) -> std::io::Result<Running> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop, mut stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("fake-apiserver".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .expect("a non-blocking std listener converts");
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let shared = shared.clone();
                            let svc = service_fn(move |req| handle(shared.clone(), req));
                            tokio::spawn(
                                http1::Builder::new()
                                    .timer(TokioTimer::new())
                                    .serve_connection(TokioIo::new(stream), svc),
                            );
                        }
                    }
                }
            });
            // Dropping the runtime here cancels every connection and watch task.
            drop(rt);
        })?;
    Ok(Running { stop, thread })
}

/// A response body: a whole JSON document, or a watch stream fed line by line.
pub enum Body {
    /// A complete body (taken when sent).
    Full(Option<Bytes>),
    /// Watch events; the stream ends when the sender is dropped.
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            // An exact size makes hyper send Content-Length instead of chunking.
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// What a request addresses.
enum Target {
    /// A fixed document (discovery, version).
    Doc(Value),
    /// A collection: all objects of a type, or those in one namespace.
    Collection(&'static Resource, Option<String>),
    /// One object, or its /status subresource when the flag is set.
    Object(&'static Resource, String, String, bool),
}

/// Serves one request; every failure becomes a Status response.
async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let line = format!("{} {}", req.method(), req.uri());
    if shared.log_requests.load(Ordering::Relaxed) {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        eprintln!(
            "fake-apiserver: {line} [content-type: {}; accept: {}]",
            header(CONTENT_TYPE),
            header(hyper::header::ACCEPT)
        );
    }
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(line);
    let response = match respond(&shared, req).await {
        Ok(response) => response,
        Err(e) => json_response(e.code, &e.status()),
    };
    Ok(response)
}

async fn respond(shared: &Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let (parts, body) = req.into_parts();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_string();
    let target = route(shared, parts.uri.path())?;
    if query.contains_key("dryRun") {
        // Ignoring it would silently persist what the client meant only to try.
        return Err(ApiError::bad_request(
            "dryRun is not supported by the fake API server",
        ));
    }
    let method = parts.method;
    let body = read_body(body).await?;
    let json_body = || -> Result<Value, ApiError> {
        if !matches!(content_type.as_str(), "" | "application/json") && method != Method::PATCH {
            // Only JSON is spoken; typed kubectl commands such as `kubectl create namespace`
            // send protobuf and get this error (`kubectl apply -f` sends JSON).
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json (got {content_type:?})"
                ),
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))
    };
    let not_allowed = || {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    };
    match target {
        Target::Doc(doc) if method == Method::GET => Ok(json_response(200, &doc)),
        Target::Doc(_) => Err(not_allowed()),
        Target::Collection(res, ns) if method == Method::GET => {
            let selector = Selector::parse(
                query.get("labelSelector").map(String::as_str),
                query.get("fieldSelector").map(String::as_str),
            )
            .map_err(ApiError::bad_request)?;
            let is_true = |k: &str| query.get(k).is_some_and(|v| parse_bool(v));
            if is_true("watch") {
                return watch(shared, res, ns, &query, selector);
            }
            let q = ListQuery {
                resource_version: query.get("resourceVersion").cloned(),
                version_match: query.get("resourceVersionMatch").cloned(),
                limit: match query.get("limit") {
                    Some(l) => l
                        .parse()
                        .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
                    None => 0,
                },
                continue_token: query.get("continue").cloned().filter(|c| !c.is_empty()),
                selector,
            };
            let list = shared.store().list(res, ns.as_deref(), &q)?;
            Ok(json_response(200, &list))
        }
        Target::Collection(res, ns) if method == Method::POST => {
            if res.namespaced && ns.is_none() {
                return Err(not_allowed());
            }
            let created = shared.store().create(res, ns.as_deref(), json_body()?)?;
            Ok(json_response(201, &created))
        }
        Target::Collection(..) => Err(not_allowed()),
        Target::Object(res, ns, name, status) => {
            let mut store = shared.store();
            let obj = match method {
                Method::GET => store.get(res, &ns, &name)?,
                Method::PUT => store.update(res, &ns, &name, json_body()?, status)?,
                Method::PATCH => {
                    let patch = json_body()?;
                    match apply_patch(&mut store, res, &ns, &name, &content_type, &patch, &query)? {
                        Patched::Created(obj) => return Ok(json_response(201, &obj)),
                        Patched::To(obj) => store.update(res, &ns, &name, obj, status)?,
                    }
                }
                Method::DELETE if !status => {
                    let options = if body.is_empty() {
                        Value::Null
                    } else {
                        json_body()?
                    };
                    store.delete(res, &ns, &name, options.get("preconditions"))?
                }
                _ => return Err(not_allowed()),
            };
            Ok(json_response(200, &obj))
        }
    }
}

/// The outcome of a patch before it is written.
enum Patched {
    /// An apply patch created the object.
    Created(Value),
    /// The object as it should become.
    To(Value),
}

/// Computes the patched object. Strategic merge patches are treated as JSON merge patches
/// (lists are replaced, not merged by key) and server-side apply as a merge patch that may create.
fn apply_patch(
    store: &mut Store,
    res: &'static Resource,
    ns: &str,
    name: &str,
    content_type: &str,
    patch: &Value,
    query: &HashMap<String, String>,
) -> Result<Patched, ApiError> {
    let current = store.get(res, ns, name);
    match content_type {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let mut obj = current?;
            patch::merge(&mut obj, patch);
            Ok(Patched::To(obj))
        }
        "application/json-patch+json" => patch::json_patch(current?, patch)
            .map(Patched::To)
            .map_err(ApiError::invalid),
        "application/apply-patch+yaml" => {
            if query.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return Err(ApiError::invalid(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            match current {
                Ok(mut obj) => {
                    patch::merge(&mut obj, patch);
                    Ok(Patched::To(obj))
                }
                Err(e) if e.code == 404 => {
                    let ns = (!ns.is_empty()).then_some(ns);
                    store.create(res, ns, patch.clone()).map(Patched::Created)
                }
                Err(e) => Err(e),
            }
        }
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
            ),
        )),
    }
}

/// Starts a watch: replays or snapshots, then streams live events, bookmarks and the timeout.
fn watch(
    shared: &Arc<Shared>,
    res: &'static Resource,
    ns: Option<String>,
    query: &HashMap<String, String>,
    selector: Selector,
) -> Result<Response<Body>, ApiError> {
    let rv = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let initial_events = query.get("sendInitialEvents").map(|v| parse_bool(v));
    let from = match (rv, initial_events) {
        (_, Some(true)) | ("" | "0", None) => WatchFrom::Snapshot,
        ("", Some(false)) => WatchFrom::Now,
        (rv, _) => WatchFrom::After(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| parse_bool(v));
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        // The real server picks a random timeout of at least --min-request-timeout (1800 s).
        None => Duration::from_secs(1800),
    };
    let (tx, body_rx) = mpsc::channel(64);
    let started = shared.store().watch(res, ns.as_deref(), from);
    let interval = *shared
        .bookmark_interval
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let stream = WatchStream {
        tx,
        res,
        selector,
        bookmark_every: bookmarks.then_some(interval),
        timeout,
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        match started {
            Ok(start) => {
                stream
                    .run(&shared, start, initial_events == Some(true))
                    .await
            }
            // As the real server does: HTTP 200, then one ERROR event, then the end.
            Err(e) => drop(stream.tx.send(event_line("ERROR", &e.status())).await),
        }
    });
    Ok(response(200, Body::Stream(body_rx)))
}

/// One open watch's output side.
struct WatchStream {
    tx: mpsc::Sender<Bytes>,
    res: &'static Resource,
    selector: Selector,
    bookmark_every: Option<Duration>,
    timeout: Duration,
}

impl WatchStream {
    /// Sends until the timeout, the client leaving, or [`Store::close_watches`].
    async fn run(&self, shared: &Shared, start: WatchStart, initial_events_end: bool) {
        let deadline = Instant::now() + self.timeout;
        let WatchStart {
            initial,
            rv,
            mut events,
        } = start;
        for ev in initial {
            if !self.send_event(&ev).await {
                return;
            }
        }
        // Streaming lists end their initial events with an annotated bookmark.
        if initial_events_end && !self.send_bookmark(rv, true).await {
            return;
        }
        let every = self.bookmark_every.unwrap_or(Duration::MAX);
        let mut ticks = tokio::time::interval_at(Instant::now() + every.min(self.timeout), every);
        loop {
            let ok = tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.send_event(&ev).await,
                    None => false,
                },
                _ = ticks.tick(), if self.bookmark_every.is_some() => {
                    self.send_periodic_bookmark(shared, &mut events).await
                }
                _ = tokio::time::sleep_until(deadline) => false,
                _ = self.tx.closed() => false,
            };
            if !ok {
                return;
            }
        }
    }

    /// Sends a BOOKMARK at the latest resourceVersion. Every event up to it is already queued
    /// (the store enqueues under the same lock), so the queue is drained first and the bookmark
    /// never runs ahead of an undelivered event.
    async fn send_periodic_bookmark(
        &self,
        shared: &Shared,
        events: &mut mpsc::UnboundedReceiver<Arc<Event>>,
    ) -> bool {
        let rv = shared.store().resource_version();
        while let Ok(ev) = events.try_recv() {
            if !self.send_event(&ev).await {
                return false;
            }
        }
        self.send_bookmark(rv, false).await
    }

    /// Sends one event as this watch's selector sees it; false once the client is gone.
    async fn send_event(&self, ev: &Event) -> bool {
        let now = self.selector.matches(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.selector.matches(p));
        // Objects moving into or out of a selector's view are added or deleted for this watch.
        let kind = match (ev.kind, before, now) {
            (EventType::Added, _, true) | (EventType::Modified, false, true) => "ADDED",
            (EventType::Modified, true, true) => "MODIFIED",
            (EventType::Modified, true, false) | (EventType::Deleted, true, _) => "DELETED",
            _ => return true,
        };
        self.tx.send(event_line(kind, &ev.object)).await.is_ok()
    }

    /// Sends a BOOKMARK carrying only the kind and a resourceVersion.
    async fn send_bookmark(&self, rv: u64, initial_events_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": meta});
        self.tx.send(event_line("BOOKMARK", &obj)).await.is_ok()
    }
}

/// One newline-terminated watch event.
fn event_line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(format!("{{\"type\":\"{kind}\",\"object\":{object}}}\n"))
}

/// Maps a path to what it addresses; unknown paths are 404 like the real server's.
fn route(shared: &Shared, path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let doc = |d: Option<Value>| d.map(Target::Doc);
    let target = match segs.as_slice() {
        ["api"] => doc(Some(resources::api_versions(&shared.addr.to_string()))),
        ["apis"] => doc(Some(resources::api_group_list())),
        ["version"] => doc(Some(resources::version_info())),
        ["api", version] => doc(resources::api_resource_list("", version)),
        ["apis", group] => doc(resources::api_group_doc(group)),
        ["apis", group, version] => doc(resources::api_resource_list(group, version)),
        ["api", version, rest @ ..] => resource_target("", version, rest),
        ["apis", group, version, rest @ ..] => resource_target(group, version, rest),
        _ => None,
    };
    target.ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    })
}

/// Resolves `[namespaces/NS/]PLURAL[/NAME[/status]]` under one group version.
fn resource_target(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let (res, ns, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !ns.is_empty()
                && resources::find(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            (
                resources::find(group, version, plural)?,
                Some(ns.to_string()),
                tail,
            )
        }
        [plural, tail @ ..] => (resources::find(group, version, plural)?, None, tail),
        [] => return None,
    };
    // A namespaced object can only be named inside its namespace.
    let in_scope = res.namespaced == ns.is_some();
    match tail {
        [] => Some(Target::Collection(res, ns)),
        [name] if in_scope => Some(Target::Object(
            res,
            ns.unwrap_or_default(),
            name.to_string(),
            false,
        )),
        [name, "status"] if in_scope => Some(Target::Object(
            res,
            ns.unwrap_or_default(),
            name.to_string(),
            true,
        )),
        _ => None,
    }
}

/// Reads a whole request body.
async fn read_body(mut body: Incoming) -> Result<Vec<u8>, ApiError> {
    use hyper::body::Body as _;
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// Go's strconv.ParseBool, which the real server uses for boolean query parameters.
fn parse_bool(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    response(code, Body::Full(Some(Bytes::from(value.to_string()))))
}

fn response(code: u16, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
