//! An in-memory Kubernetes API server for end-to-end tests of nftpol's node agent.
//!
//! No real kube-apiserver can run on the build machines, so this crate serves just enough of the
//! API for kube-rs watchers/reflectors and kubectl: Namespaces and Pods under `/api/v1`,
//! NetworkPolicies under `/apis/networking.k8s.io/v1`, over plain HTTP on loopback.
//!
//! ```text
//!  test ── apply / delete / stop / restart ──▶ FakeApiServer (the handle)
//!                                                   │
//!  agent, kubectl ── HTTP ──▶ server thread ──▶ Store: objects, global resourceVersion,
//!                             (hyper on its own       bounded event history, live watchers
//!                              runtime; dropped       (one mutex; outlives server threads,
//!                              by stop)                so restart keeps the state)
//! ```
//!
//! What behaves as in the real server:
//! - discovery (`/api`, `/api/v1`, `/apis`, `/apis/GROUP[/VERSION]`, `/version`);
//! - one global resourceVersion, stamped on every object and list; `limit`/`continue` pages
//!   that are consistent snapshots; `resourceVersion` + `resourceVersionMatch` on lists
//!   (`""`/`"0"` = latest, `Exact` = rolled back to that version, 410 when too old);
//! - watches: synthetic ADDED for `resourceVersion` `""`/`"0"`, replay from the history after a
//!   given one, an `ERROR` event with a 410 `Expired` Status when it is older than the history,
//!   BOOKMARKs when `allowWatchBookmarks`, `timeoutSeconds`, `sendInitialEvents` (streaming
//!   lists, ending with the `k8s.io/initial-events-end` bookmark);
//! - label selectors (all but `<`/`>`) and field selectors on lists and watches, with objects
//!   moving in or out of a selector seen as ADDED/DELETED;
//! - create/get/update/patch/delete with Status errors (404, 409 AlreadyExists and Conflict,
//!   400, 422), no-op writes skipped, uid/creationTimestamp/generation assigned, namespaces
//!   required to exist.
//!
//! Deliberate simplifications: no authentication, admission, defaulting or validation; the
//! main resource also writes `status`; strategic merge and server-side apply are JSON merge
//! patches (lists are replaced); deletion is immediate (no graceful period, no finalizers) and
//! deleting a namespace deletes its contents at once; field selectors accept any field path;
//! `limit` is honoured even with `resourceVersion=0` (the real cache ignores it there); one event
//! history serves all types (the real server keeps one per type);
//! only JSON is spoken (no protobuf, no `Table`), so kubectl prints plain NAME/AGE columns and its
//! typed commands that send protobuf (`kubectl create namespace`) get 415; no OpenAPI documents,
//! so `kubectl apply`/`create -f` need `--validate=false`; `dryRun` is refused (400) rather than
//! ignored; `deletecollection` is not served.
//!
//! Set `FAKE_APISERVER_LOG` to echo every request to stderr; [`FakeApiServer::requests`] keeps
//! them for assertions.

mod error;
mod patch;
mod resources;
mod select;
mod server;
mod store;

pub use error::ApiError;
pub use store::DEFAULT_HISTORY_LIMIT;

use serde_json::Value;
use server::{Running, Shared};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running (or stopped) fake API server; dropping it stops it.
#[derive(Debug)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

impl FakeApiServer {
    /// Starts a server on a free port of 127.0.0.1; panics if it cannot bind.
    pub fn start() -> FakeApiServer {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_on(addr).expect("binding 127.0.0.1:0")
    }

    /// Starts a server on `addr`, which must be a loopback address (port 0 picks one).
    pub fn start_on(addr: SocketAddr) -> io::Result<FakeApiServer> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr}: the fake API server only listens on loopback"),
            ));
        }
        let listener = TcpListener::bind(addr)?;
        let shared = Arc::new(Shared {
            store: Mutex::default(),
            requests: Mutex::default(),
            bookmark_interval: Mutex::new(Duration::from_secs(1)),
            log_requests: std::env::var_os("FAKE_APISERVER_LOG").is_some().into(),
            addr: listener.local_addr()?,
        });
        let running = server::spawn(shared.clone(), listener)?;
        Ok(FakeApiServer {
            shared,
            running: Mutex::new(Some(running)),
        })
    }

    /// The address served, e.g. 127.0.0.1:41234.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// Writes a kubeconfig whose current context points at this server (http, no credentials,
    /// namespace `default`).
    pub fn kubeconfig(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake\n  cluster:\n    server: {}\n\
             users:\n\
             - name: fake\n  user: {{}}\n\
             contexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n",
            self.url()
        );
        std::fs::write(path, text)
    }

    /// Stops serving: the port closes and open connections and watches are cut. The state is
    /// kept; [`FakeApiServer::restart`] serves it again. Does nothing if already stopped.
    pub fn stop(&self) {
        if let Some(running) = self.running_slot().take() {
            running.stop();
        }
    }

    /// Stops (if running) and serves the same state again on the same port, like an API server
    /// that went away and came back.
    pub fn restart(&self) -> io::Result<()> {
        self.stop();
        let listener = TcpListener::bind(self.shared.addr)?;
        *self.running_slot() = Some(server::spawn(self.shared.clone(), listener)?);
        Ok(())
    }

    /// Whether the port is being served.
    pub fn is_running(&self) -> bool {
        self.running_slot().is_some()
    }

    /// Keeps only the last `n` events; watches and exact lists from older resourceVersions then
    /// get 410 Expired. `0` makes every resourceVersion but the latest too old.
    pub fn set_history_limit(&self, n: usize) {
        self.shared.store().set_history_limit(n);
    }

    /// How often watches that allow bookmarks get one (default 1 s; applies to new watches).
    pub fn set_bookmark_interval(&self, every: Duration) {
        let every = every.max(Duration::from_millis(1));
        *self
            .shared
            .bookmark_interval
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = every;
    }

    /// Ends every open watch cleanly, as the real server does when a watch times out.
    pub fn close_watches(&self) {
        self.shared.store().close_watches();
    }

    /// Creates or replaces an object given as JSON (`apiVersion`, `kind`, `metadata.name`;
    /// namespaced objects default to namespace `default`), unconditionally, like a controller
    /// writing through the API. Returns the stored object.
    pub fn apply(&self, mut obj: Value) -> Result<Value, ApiError> {
        let api_version = obj["apiVersion"].as_str().unwrap_or("");
        let kind = obj["kind"].as_str().unwrap_or("");
        let res = resources::by_type(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!("no served type {api_version:?} {kind:?}"))
        })?;
        if let Some(meta) = obj["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        let name = store::meta_str(&obj, "name").to_string();
        let ns = match store::meta_str(&obj, "namespace") {
            _ if !res.namespaced => "",
            "" => "default",
            ns => ns,
        }
        .to_string();
        let mut store = self.shared.store();
        if store.get(res, &ns, &name).is_ok() {
            store.update(res, &ns, &name, obj, false)
        } else {
            store.create(res, res.namespaced.then_some(ns.as_str()), obj)
        }
    }

    /// Deletes an object; `kind` may be a kind, plural or short name (`Pod`, `pods`, `po`) and
    /// `namespace` is "" for namespaces. Returns the object's last state.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let res = lookup(kind)?;
        self.shared.store().delete(res, namespace, name, None)
    }

    /// Reads an object, as GET would.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let res = lookup(kind)?;
        self.shared.store().get(res, namespace, name)
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// Every request received so far, as "METHOD /path?query", oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Echoes every request line (with Content-Type and Accept) to stderr; off by default,
    /// on from the start when the environment has `FAKE_APISERVER_LOG`.
    pub fn set_log_requests(&self, on: bool) {
        self.shared.log_requests.store(on, Ordering::Relaxed);
    }

    fn running_slot(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The resource for a user-given kind name, or a 404 Status.
fn lookup(kind: &str) -> Result<&'static resources::Resource, ApiError> {
    resources::lookup(kind).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            format!("the server doesn't have a resource type {kind:?}"),
        )
    })
}
