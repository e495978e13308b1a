//! kube-rs reflectors and watchers against the fake: following changes, recovering from
//! 410 Expired by relisting, and resuming after the server goes away and comes back.

use fake_apiserver::FakeApiServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A client configured the way the agent will be: from a kubeconfig file.
async fn client(server: &FakeApiServer) -> Client {
    let path = std::env::temp_dir().join(format!(
        "fake-apiserver-{}-{}.kubeconfig",
        std::process::id(),
        server.addr().port()
    ));
    server.kubeconfig(&path).unwrap();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn pod(ns: &str, name: &str, ip: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "podIP": ip},
    }))
    .unwrap()
}

fn policy(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    })
}

/// Polls `cond` for up to 20 s (the watcher's backoff after an outage is ~1-2 s).
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Runs a NetworkPolicy watcher (with the default backoff, as the agent will) and records
/// its events as short strings.
fn record_policy_events(client: Client) -> Arc<Mutex<Vec<String>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let api: Api<NetworkPolicy> = Api::all(client);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(stream.for_each(move |ev| {
        let line = match ev {
            Ok(watcher::Event::Init) => "Init".to_string(),
            Ok(watcher::Event::InitApply(np)) => format!("InitApply {}", np.name_any()),
            Ok(watcher::Event::InitDone) => "InitDone".to_string(),
            Ok(watcher::Event::Apply(np)) => format!("Apply {}", np.name_any()),
            Ok(watcher::Event::Delete(np)) => format!("Delete {}", np.name_any()),
            Err(e) => format!("Error {e}"),
        };
        sink.lock().unwrap().push(line);
        futures::future::ready(())
    }));
    events
}

fn snapshot(events: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    events.lock().unwrap().clone()
}

#[tokio::test]
async fn reflector_and_watcher_follow_api_writes() {
    let server = FakeApiServer::start();
    server.apply(namespace("a")).unwrap();
    let client = client(&server).await;

    let (pods, writer) = reflector::store::<Pod>();
    let stream = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    let policy_events = record_policy_events(client.clone());
    pods.wait_until_ready().await.unwrap();

    let api: Api<Pod> = Api::namespaced(client.clone(), "a");
    let p1 = ObjectRef::<Pod>::new("p1").within("a");
    api.create(&PostParams::default(), &pod("a", "p1", "10.0.0.1"))
        .await
        .unwrap();
    wait_for("p1 in the store", || pods.get(&p1).is_some()).await;
    assert_eq!(
        pods.get(&p1)
            .unwrap()
            .status
            .as_ref()
            .unwrap()
            .pod_ip
            .as_deref(),
        Some("10.0.0.1")
    );

    let relabel = json!({"metadata": {"labels": {"role": "db"}}});
    api.patch("p1", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .unwrap();
    wait_for("the new label", || {
        pods.get(&p1)
            .is_some_and(|p| p.labels().get("role").map(String::as_str) == Some("db"))
    })
    .await;

    let mut replaced = api.get("p1").await.unwrap();
    replaced.status.as_mut().unwrap().pod_ip = Some("10.0.0.9".into());
    api.replace("p1", &PostParams::default(), &replaced)
        .await
        .unwrap();
    wait_for("the new pod IP", || {
        pods.get(&p1)
            .and_then(|p| p.status.as_ref()?.pod_ip.clone())
            .as_deref()
            == Some("10.0.0.9")
    })
    .await;

    api.delete("p1", &DeleteParams::default()).await.unwrap();
    wait_for("p1 gone from the store", || pods.get(&p1).is_none()).await;

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), "a");
    let np: NetworkPolicy = serde_json::from_value(policy("a", "deny")).unwrap();
    policies.create(&PostParams::default(), &np).await.unwrap();
    let ingress_only = json!({"spec": {"policyTypes": ["Ingress", "Egress"]}});
    policies
        .patch(
            "deny",
            &PatchParams::default(),
            &Patch::Merge(&ingress_only),
        )
        .await
        .unwrap();
    policies
        .delete("deny", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the policy's deletion", || {
        snapshot(&policy_events).contains(&"Delete deny".to_string())
    })
    .await;
    assert_eq!(
        snapshot(&policy_events),
        [
            "Init",
            "InitDone",
            "Apply deny",
            "Apply deny",
            "Delete deny"
        ]
    );

    // What kube-rs actually asked for (printed for the record; run with --nocapture).
    let requests = server.requests();
    for r in &requests {
        eprintln!("kube-rs request: {r}");
    }
    for expected in [
        "GET /api/v1/pods?&limit=500",
        "GET /api/v1/pods?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=",
        "GET /apis/networking.k8s.io/v1/networkpolicies?&limit=500",
        "POST /api/v1/namespaces/a/pods?",
        "PATCH /api/v1/namespaces/a/pods/p1?",
        "GET /api/v1/namespaces/a/pods/p1",
        "PUT /api/v1/namespaces/a/pods/p1?",
        "DELETE /api/v1/namespaces/a/pods/p1?",
    ] {
        assert!(
            requests.iter().any(|r| r.starts_with(expected)),
            "no request starting with {expected:?} in {requests:#?}"
        );
    }
}

#[tokio::test]
async fn expired_resource_version_makes_the_watcher_relist() {
    let server = FakeApiServer::start();
    // Without bookmarks advancing it, the policy watcher's resourceVersion stays old while
    // only pods change: exactly when a real server expires it.
    server.set_bookmark_interval(Duration::from_secs(3600));
    server.apply(namespace("a")).unwrap();
    server.apply(policy("a", "old")).unwrap();
    let client = client(&server).await;
    let events = record_policy_events(client);
    wait_for("the initial list", || {
        snapshot(&events) == ["Init", "InitApply old", "InitDone"]
    })
    .await;

    // While the server is away: "old" is deleted, "new" created, pods churn, and the history
    // is cut to nothing, so the watcher's resourceVersion is too old when it comes back.
    server.stop();
    server.delete("networkpolicy", "a", "old").unwrap();
    server.apply(policy("a", "new")).unwrap();
    server
        .apply(serde_json::to_value(pod("a", "churn", "10.0.0.5")).unwrap())
        .unwrap();
    let stale_rv = server.resource_version() - 3;
    server.set_history_limit(0);
    server.restart().unwrap();

    wait_for("the relist", || {
        snapshot(&events).ends_with(&["Init".into(), "InitApply new".into(), "InitDone".into()])
    })
    .await;
    let seen = snapshot(&events);
    assert!(
        seen.iter()
            .any(|e| e.contains("too old resource version") && e.ends_with("Expired")),
        "the watcher reported the 410: {seen:#?}"
    );
    let expired_watch = format!("resourceVersion={stale_rv}");
    let requests = server.requests();
    let watch_at = requests
        .iter()
        .position(|r| {
            r.contains("networkpolicies?")
                && r.contains("watch=true")
                && r.ends_with(&expired_watch)
        })
        .unwrap_or_else(|| panic!("a watch from {stale_rv} in {requests:#?}"));
    assert!(
        requests[watch_at..]
            .iter()
            .any(|r| r.starts_with("GET /apis/networking.k8s.io/v1/networkpolicies?&limit=500")),
        "a relist after the expired watch: {requests:#?}"
    );

    // And it is live again.
    server.set_history_limit(100);
    server.apply(policy("a", "later")).unwrap();
    wait_for("a live event after recovery", || {
        snapshot(&events).last().map(String::as_str) == Some("Apply later")
    })
    .await;
}

#[tokio::test]
async fn reflector_resumes_after_a_restart() {
    let server = FakeApiServer::start();
    server.apply(namespace("a")).unwrap();
    for (name, ip) in [("p1", "10.0.0.1"), ("p2", "10.0.0.2")] {
        server
            .apply(serde_json::to_value(pod("a", name, ip)).unwrap())
            .unwrap();
    }
    let client = client(&server).await;
    let (pods, writer) = reflector::store::<Pod>();
    let stream = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    pods.wait_until_ready().await.unwrap();
    assert_eq!(pods.len(), 2);
    let lists_before = count_pod_lists(&server);

    // Cut the watch mid-stream; change things while the server is away.
    server.stop();
    assert!(!server.is_running());
    server.delete("pods", "a", "p1").unwrap();
    server
        .apply(serde_json::to_value(pod("a", "p3", "10.0.0.3")).unwrap())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().unwrap();

    let p = |name: &str| ObjectRef::<Pod>::new(name).within("a");
    wait_for("the store to catch up", || {
        pods.get(&p("p1")).is_none() && pods.get(&p("p3")).is_some()
    })
    .await;
    assert_eq!(pods.len(), 2, "p2 and p3");
    assert_eq!(
        count_pod_lists(&server),
        lists_before,
        "the watcher resumed from its resourceVersion without relisting"
    );

    // A plain restart (no gap) and a write through the API afterwards.
    server.restart().unwrap();
    let api: Api<Pod> = Api::namespaced(client, "a");
    api.create(&PostParams::default(), &pod("a", "p4", "10.0.0.4"))
        .await
        .unwrap();
    wait_for("p4 after the second restart", || {
        pods.get(&p("p4")).is_some()
    })
    .await;
}

fn count_pod_lists(server: &FakeApiServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/pods?") && !r.contains("watch=true"))
        .count()
}

#[tokio::test]
async fn streaming_list_with_a_label_selector() {
    let server = FakeApiServer::start();
    server.apply(namespace("a")).unwrap();
    let with_app = |name: &str, app: &str| {
        let mut p = serde_json::to_value(pod("a", name, "10.0.0.1")).unwrap();
        p["metadata"]["labels"]["app"] = json!(app);
        p
    };
    server.apply(with_app("web", "web")).unwrap();
    server.apply(with_app("db", "db")).unwrap();
    let client = client(&server).await;
    let config = watcher::Config::default()
        .streaming_lists()
        .labels("app=web");
    let (pods, writer) = reflector::store::<Pod>();
    let stream = watcher(Api::<Pod>::all(client), config)
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    pods.wait_until_ready().await.unwrap();
    let names = |pods: &reflector::Store<Pod>| {
        let mut names: Vec<String> = pods.state().iter().map(|p| p.name_any()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&pods), ["web"]);

    // Objects entering and leaving the selector arrive as ADDED and DELETED.
    server.apply(with_app("db", "web")).unwrap();
    server.apply(with_app("web", "other")).unwrap();
    wait_for("db in, web out", || names(&pods) == ["db"]).await;

    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("sendInitialEvents=true") && r.contains("labelSelector=app%3Dweb")),
        "{requests:#?}"
    );
    assert!(
        !requests.iter().any(|r| r.contains("limit=")),
        "a streaming list needs no list call: {requests:#?}"
    );
}
