//! The wire format, checked with a hand-written HTTP/1.1 client: discovery shapes, list
//! pagination, watch framing, optimistic concurrency and patches.

use fake_apiserver::FakeApiServer;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A response: status, lower-cased headers, de-chunked body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection, read until the server closes it.
fn call(server: &FakeApiServer, method: &str, path: &str, body: Option<(&str, Value)>) -> Reply {
    let mut conn = TcpStream::connect(server.addr()).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n");
    let payload = body
        .as_ref()
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    if let Some((content_type, _)) = &body {
        req += &format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            payload.len()
        );
    }
    req += "\r\n";
    req += &payload;
    conn.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Decodes a chunked body, checking the framing as it goes.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
        if size == 0 {
            assert_eq!(after, "\r\n", "the stream ends with an empty chunk");
            return body;
        }
        body += &after[..size];
        rest = after[size..]
            .strip_prefix("\r\n")
            .expect("CRLF after a chunk");
    }
}

fn ns(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}})
}

const JSON: &str = "application/json";

#[test]
fn discovery_documents_have_the_real_shapes() {
    let server = FakeApiServer::start();
    let api = call(&server, "GET", "/api", None).json();
    assert_eq!(
        (api["kind"].as_str(), &api["versions"]),
        (Some("APIVersions"), &json!(["v1"]))
    );

    let core = call(&server, "GET", "/api/v1", None).json();
    assert_eq!(core["kind"], "APIResourceList");
    assert_eq!(core["groupVersion"], "v1");
    let pods = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods")
        .unwrap();
    assert_eq!(pods["kind"], "Pod");
    assert_eq!(pods["namespaced"], true);
    assert_eq!(
        pods["verbs"],
        json!([
            "create", "delete", "get", "list", "patch", "update", "watch"
        ])
    );

    let groups = call(&server, "GET", "/apis", None).json();
    assert_eq!(groups["kind"], "APIGroupList");
    assert_eq!(groups["groups"][0]["name"], "networking.k8s.io");
    assert_eq!(
        groups["groups"][0]["preferredVersion"]["groupVersion"],
        "networking.k8s.io/v1"
    );
    let group = call(&server, "GET", "/apis/networking.k8s.io", None).json();
    assert_eq!(
        (group["kind"].as_str(), group["name"].as_str()),
        (Some("APIGroup"), Some("networking.k8s.io"))
    );
    let netv1 = call(&server, "GET", "/apis/networking.k8s.io/v1", None).json();
    assert_eq!(netv1["groupVersion"], "networking.k8s.io/v1");
    assert_eq!(netv1["resources"][0]["kind"], "NetworkPolicy");
    assert_eq!(call(&server, "GET", "/version", None).json()["minor"], "33");

    let missing = call(&server, "GET", "/apis/apps/v1", None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["kind"], "Status");
}

#[test]
fn lists_are_paginated_consistent_snapshots() {
    let server = FakeApiServer::start();
    server.apply(ns("a")).unwrap();
    for name in ["p1", "p2", "p3", "p4", "p5"] {
        let created = call(
            &server,
            "POST",
            "/api/v1/namespaces/a/pods",
            Some((JSON, pod(name))),
        );
        assert_eq!(created.status, 201, "{}", created.body);
        let meta = &created.json()["metadata"];
        assert!(meta["uid"].is_string() && meta["creationTimestamp"].is_string());
        assert_eq!(meta["namespace"], "a", "the namespace comes from the path");
    }
    let page1 = call(&server, "GET", "/api/v1/pods?limit=2", None).json();
    assert_eq!(page1["kind"], "PodList");
    assert_eq!(page1["apiVersion"], "v1");
    assert_eq!(page1["metadata"]["remainingItemCount"], 3);
    assert!(
        page1["items"][0].get("kind").is_none(),
        "list items carry no kind, as in Kubernetes"
    );
    let list_rv = page1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // A change between pages does not show: pages come from the first page's snapshot.
    server
        .apply(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p4", "namespace": "a", "labels": {"changed": "yes"}}}))
        .unwrap();
    let mut names: Vec<String> = Vec::new();
    let mut page = page1;
    loop {
        assert_eq!(page["metadata"]["resourceVersion"], list_rv.as_str());
        for item in page["items"].as_array().unwrap() {
            assert!(
                item["metadata"]["labels"].get("changed").is_none(),
                "{item}"
            );
            names.push(item["metadata"]["name"].as_str().unwrap().into());
        }
        let Some(token) = page["metadata"]["continue"].as_str() else {
            break;
        };
        page = call(
            &server,
            "GET",
            &format!("/api/v1/pods?limit=2&continue={token}"),
            None,
        )
        .json();
    }
    assert_eq!(names, ["p1", "p2", "p3", "p4", "p5"]);

    let fresh = call(
        &server,
        "GET",
        "/api/v1/namespaces/a/pods?resourceVersion=0",
        None,
    )
    .json();
    assert_ne!(
        fresh["metadata"]["resourceVersion"],
        list_rv.as_str(),
        "rv 0 is the latest"
    );
    let selected = call(
        &server,
        "GET",
        "/api/v1/pods?labelSelector=changed%3Dyes",
        None,
    )
    .json();
    assert_eq!(selected["items"].as_array().unwrap().len(), 1);

    let both = call(
        &server,
        "GET",
        &format!("/api/v1/pods?continue=x&resourceVersion={list_rv}"),
        None,
    );
    assert_eq!(both.status, 400, "continue and resourceVersion together");
    let exact = format!("/api/v1/pods?resourceVersion={list_rv}&resourceVersionMatch=Exact");
    assert_eq!(
        call(&server, "GET", &exact, None).json()["items"][3]["metadata"]["labels"],
        json!({"app": "p4"})
    );
    server.set_history_limit(0);
    let gone = call(&server, "GET", &exact, None);
    assert_eq!(gone.status, 410);
    assert_eq!(
        (gone.json()["reason"].as_str(), gone.json()["code"].as_u64()),
        (Some("Expired"), Some(410))
    );
}

#[test]
fn watch_streams_newline_delimited_events() {
    let server = FakeApiServer::start();
    server.set_bookmark_interval(Duration::from_millis(300));
    server.apply(ns("a")).unwrap();
    let start_rv = server.resource_version();
    let mut p1 = pod("p1");
    p1["metadata"]["namespace"] = json!("a");
    server.apply(p1.clone()).unwrap();
    p1["metadata"]["labels"]["x"] = json!("1");
    server.apply(p1).unwrap();

    // Writes while the watch is open arrive live, after the replayed history.
    let writer = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            server.delete("pods", "default", "p1").unwrap_err(); // wrong namespace: 404
            server.delete("pods", "a", "p1").unwrap();
        });
        let started = Instant::now();
        let path = format!(
            "/api/v1/namespaces/a/pods?watch=1&resourceVersion={start_rv}&allowWatchBookmarks=true&timeoutSeconds=1"
        );
        let reply = call(&server, "GET", &path, None);
        (reply, started.elapsed())
    });
    let (reply, took) = writer;
    assert!(
        took >= Duration::from_millis(900),
        "timeoutSeconds=1 ends the stream, took {took:?}"
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(
        reply.body.ends_with('\n'),
        "every event ends with a newline"
    );
    let events: Vec<Value> = reply
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let changes: Vec<&str> = kinds.iter().copied().filter(|k| *k != "BOOKMARK").collect();
    assert_eq!(changes, ["ADDED", "MODIFIED", "DELETED"], "{}", reply.body);
    let bookmark = events
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("a bookmark");
    assert_eq!(
        bookmark["object"],
        json!({"kind": "Pod", "apiVersion": "v1",
               "metadata": {"resourceVersion": server.resource_version().to_string()}})
    );
    let rvs: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] != "BOOKMARK")
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]) && rvs[0] > start_rv,
        "{rvs:?}"
    );

    // A resourceVersion older than the history: one ERROR event, then the end.
    server.set_history_limit(0);
    let expired = call(
        &server,
        "GET",
        &format!("/api/v1/pods?watch=true&resourceVersion={start_rv}"),
        None,
    );
    assert_eq!(
        expired.status, 200,
        "the real server reports expiry inside the stream"
    );
    let line: Value = serde_json::from_str(expired.body.trim_end()).unwrap();
    assert_eq!(line["type"], "ERROR");
    assert_eq!(line["object"]["kind"], "Status");
    assert_eq!(line["object"]["code"], 410);
    assert_eq!(line["object"]["reason"], "Expired");
}

#[test]
fn writes_check_resource_versions_and_patch() {
    let server = FakeApiServer::start();
    server.apply(ns("a")).unwrap();
    let url = "/api/v1/namespaces/a/pods/p";
    assert_eq!(
        call(
            &server,
            "POST",
            "/api/v1/namespaces/a/pods",
            Some((JSON, pod("p")))
        )
        .status,
        201
    );
    let dup = call(
        &server,
        "POST",
        "/api/v1/namespaces/a/pods",
        Some((JSON, pod("p"))),
    );
    assert_eq!(
        (dup.status, dup.json()["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    let no_ns = call(
        &server,
        "POST",
        "/api/v1/namespaces/b/pods",
        Some((JSON, pod("p"))),
    );
    assert_eq!(no_ns.status, 404, "the namespace must exist");

    let v1 = call(&server, "GET", url, None).json();
    let mut v2 = v1.clone();
    v2["metadata"]["labels"]["app"] = json!("changed");
    let put = call(&server, "PUT", url, Some((JSON, v2)));
    assert_eq!(put.status, 200);
    assert_ne!(
        put.json()["metadata"]["resourceVersion"],
        v1["metadata"]["resourceVersion"]
    );
    let stale = call(&server, "PUT", url, Some((JSON, v1.clone())));
    assert_eq!(stale.status, 409);
    assert_eq!(stale.json()["reason"], "Conflict");

    let merge =
        json!({"metadata": {"labels": {"app": null, "tier": "db"}}, "spec": {"nodeName": "n1"}});
    let patched = call(
        &server,
        "PATCH",
        url,
        Some(("application/merge-patch+json", merge)),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["metadata"]["labels"], json!({"tier": "db"}));
    assert_eq!(patched.json()["spec"]["nodeName"], "n1");
    assert_eq!(
        patched.json()["metadata"]["generation"],
        2,
        "a spec change bumps generation"
    );

    let smp = json!({"metadata": {"labels": {"x": "y"}}});
    let patched = call(
        &server,
        "PATCH",
        url,
        Some(("application/strategic-merge-patch+json", smp)),
    );
    assert_eq!(
        patched.json()["metadata"]["labels"],
        json!({"tier": "db", "x": "y"})
    );
    let ops = json!([{"op": "replace", "path": "/metadata/labels/x", "value": "z"}]);
    let patched = call(
        &server,
        "PATCH",
        url,
        Some(("application/json-patch+json", ops)),
    );
    assert_eq!(patched.json()["metadata"]["labels"]["x"], "z");
    let stale_patch = json!({"metadata": {"resourceVersion": v1["metadata"]["resourceVersion"], "labels": {"q": "1"}}});
    let conflict = call(
        &server,
        "PATCH",
        url,
        Some(("application/merge-patch+json", stale_patch)),
    );
    assert_eq!(
        conflict.status, 409,
        "a patch carrying a stale resourceVersion conflicts"
    );
    assert_eq!(
        call(&server, "PATCH", url, Some(("text/plain", json!({})))).status,
        415
    );

    let status = json!({"status": {"podIP": "10.1.2.3"}});
    let patched = call(
        &server,
        "PATCH",
        &format!("{url}/status"),
        Some(("application/merge-patch+json", status)),
    );
    assert_eq!(patched.json()["status"]["podIP"], "10.1.2.3");

    let deleted = call(&server, "DELETE", url, None);
    assert_eq!(
        (deleted.status, deleted.json()["metadata"]["name"].as_str()),
        (200, Some("p"))
    );
    let gone = call(&server, "GET", url, None);
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["message"], "pods \"p\" not found");
}
