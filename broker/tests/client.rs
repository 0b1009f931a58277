//! A real client (async-nats, the official Rust client) against the server: what applications
//! do. Each test runs against natsd, and also against the reference server when it is
//! installed, side by side (a failure names the server it failed against).

mod common;

use async_nats::{ConnectOptions, Event, HeaderMap};
use bytes::Bytes;
use common::*;
use futures::{FutureExt, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::time::timeout;

/// A wait for something that should happen at once (a message, a reply).
const WAIT: Duration = Duration::from_secs(3);

/// Runs `test` against natsd and, when installed, the reference server, concurrently.
async fn for_each_server_async<F, Fut>(test: F)
where
    F: Fn(Kind) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut kinds = vec![Kind::Natsd];
    if reference_available() {
        kinds.insert(0, Kind::Reference);
    }
    let runs = kinds.iter().map(|&k| {
        AssertUnwindSafe(test(k))
            .catch_unwind()
            .map(move |r| (k, r))
    });
    let failed: Vec<&str> = futures::future::join_all(runs)
        .await
        .into_iter()
        .filter_map(|(k, r)| r.is_err().then(|| k.name()))
        .collect();
    assert!(
        failed.is_empty(),
        "failed against: {} (see the panic messages above)",
        failed.join(", ")
    );
}

/// Starts a server without blocking the runtime.
async fn start(launch: Launch) -> Server {
    tokio::task::spawn_blocking(move || launch.start())
        .await
        .expect("server start panicked")
}

async fn client(srv: &Server) -> async_nats::Client {
    connect_with(srv, ConnectOptions::new()).await
}

async fn connect_with(srv: &Server, opts: ConnectOptions) -> async_nats::Client {
    opts.connection_timeout(WAIT)
        .connect(srv.url())
        .await
        .unwrap_or_else(|e| panic!("[{}] connect to {}: {e}", srv.kind.name(), srv.url()))
}

/// A round trip: once it returns, the server has handled everything `c` sent before it.
/// (`Client::flush` only writes to the socket; a SUB flushed on one connection may still be
/// unknown to the server when a PUB from another connection arrives.) The client's own message
/// comes back after everything queued for it earlier, too.
async fn sync(k: Kind, c: &async_nats::Client) {
    let subject = c.new_inbox();
    let mut s = c.subscribe(subject.clone()).await.unwrap();
    c.publish(subject, "sync".into()).await.unwrap();
    let m = next(k, &mut s).await;
    assert_eq!(m.payload, "sync", "[{}] sync message", k.name());
}

/// [`sync`] for a client that does not get its own messages: a request nobody answers comes
/// back as a 503 once the server has handled it.
async fn sync_no_echo(k: Kind, c: &async_nats::Client) {
    match timeout(WAIT, c.request(c.new_inbox(), "sync".into())).await {
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
        other => panic!(
            "[{}] sync by no-responders request: {:?}",
            k.name(),
            other.map(|r| r.map(|m| m.payload))
        ),
    }
}

/// Everything already delivered to `sub` (call after a [`sync`]). A short timeout rather than
/// `now_or_never`: tokio's cooperative budget can make a ready channel look empty.
async fn take_ready(sub: &mut async_nats::Subscriber) -> Vec<async_nats::Message> {
    let mut v = Vec::new();
    while let Ok(Some(m)) = timeout(Duration::from_millis(50), sub.next()).await {
        v.push(m);
    }
    v
}

async fn next(kind: Kind, sub: &mut async_nats::Subscriber) -> async_nats::Message {
    timeout(WAIT, sub.next())
        .await
        .unwrap_or_else(|_| panic!("[{}] no message within {WAIT:?}", kind.name()))
        .unwrap_or_else(|| panic!("[{}] subscription ended", kind.name()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_subscribe() {
    for_each_server_async(|k| async move {
        let srv = start(Launch::new(k)).await;
        let c = client(&srv).await;
        let mut sub = c.subscribe("greet.joe").await.unwrap();
        c.publish("greet.joe", "hello".into()).await.unwrap();
        c.publish("greet.ann", "not for joe".into()).await.unwrap();
        c.publish("greet.joe", Bytes::new()).await.unwrap();
        let m = next(k, &mut sub).await;
        assert_eq!(m.subject.as_str(), "greet.joe", "[{}]", k.name());
        assert_eq!(m.payload, "hello", "[{}]", k.name());
        assert!(m.reply.is_none(), "[{}]", k.name());
        let m = next(k, &mut sub).await;
        assert_eq!(m.payload, "", "[{}] empty payload", k.name());

        // Across clients, with a reply subject.
        let other = client(&srv).await;
        other
            .publish_with_reply("greet.joe", "answer.here", "from other".into())
            .await
            .unwrap();
        other.flush().await.unwrap();
        let m = next(k, &mut sub).await;
        assert_eq!(m.payload, "from other", "[{}]", k.name());
        assert_eq!(
            m.reply.as_ref().map(|r| r.as_str()),
            Some("answer.here"),
            "[{}]",
            k.name()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards() {
    for_each_server_async(|k| async move {
        let srv = start(Launch::new(k)).await;
        let c = client(&srv).await;
        let mut star = c.subscribe("a.*").await.unwrap();
        let mut gt = c.subscribe("a.>").await.unwrap();
        let mut mid = c.subscribe("*.b.*").await.unwrap();
        for s in ["a", "a.b", "a.b.c", "x.b.y", "a.x"] {
            c.publish(s, s.to_string().into()).await.unwrap();
        }
        // A fence: everything before it has been routed once it arrives.
        let mut fence = c.subscribe("fence").await.unwrap();
        c.publish("fence", "".into()).await.unwrap();
        next(k, &mut fence).await;
        let subjects = |v: Vec<async_nats::Message>| -> Vec<String> {
            v.into_iter().map(|m| m.subject.to_string()).collect()
        };
        let got = subjects(take_ready(&mut star).await);
        assert_eq!(got, ["a.b", "a.x"], "[{}] a.*", k.name());
        let got = subjects(take_ready(&mut gt).await);
        assert_eq!(got, ["a.b", "a.b.c", "a.x"], "[{}] a.>", k.name());
        let got = subjects(take_ready(&mut mid).await);
        assert_eq!(got, ["a.b.c", "x.b.y"], "[{}] *.b.*", k.name());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_groups_share_the_work_and_lose_nothing() {
    for_each_server_async(|k| async move {
        let srv = start(Launch::new(k)).await;
        let n = 300;
        let mut members = Vec::new();
        for _ in 0..3 {
            let c = client(&srv).await;
            let s = c.queue_subscribe("jobs", "workers".into()).await.unwrap();
            sync(k, &c).await;
            members.push((c, s));
        }
        let watcher = client(&srv).await;
        let mut all = watcher.subscribe("jobs").await.unwrap();
        sync(k, &watcher).await;

        let publ = client(&srv).await;
        for i in 0..n {
            publ.publish("jobs", i.to_string().into()).await.unwrap();
        }
        sync(k, &publ).await;

        // The plain subscriber sees every message once, in order.
        for i in 0..n {
            let m = next(k, &mut all).await;
            assert_eq!(m.payload, i.to_string(), "[{}] plain subscriber", k.name());
        }
        // The group sees every message exactly once, spread over its members.
        let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
        let mut per_member = Vec::new();
        let mut got = 0;
        for (idx, (c, s)) in members.iter_mut().enumerate() {
            // After this round trip every delivery to this member is in its channel.
            sync(k, c).await;
            let mut count = 0;
            for m in take_ready(s).await {
                let i: u32 = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
                assert!(
                    seen.insert(i, idx).is_none(),
                    "[{}] message {i} delivered to two members of the group",
                    k.name()
                );
                count += 1;
                got += 1;
            }
            per_member.push(count);
        }
        assert_eq!(
            got,
            n,
            "[{}] group got {got} of {n} messages (per member {per_member:?})",
            k.name()
        );
        assert!(
            per_member.iter().all(|&c| c > 0),
            "[{}] a member got nothing: {per_member:?}",
            k.name()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply() {
    for_each_server_async(|k| async move {
        let srv = start(Launch::new(k)).await;
        let responder = client(&srv).await;
        let mut svc = responder.subscribe("svc.upper").await.unwrap();
        sync(k, &responder).await;
        let r2 = responder.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = svc.next().await {
                let reply = m.reply.expect("a request has a reply subject");
                let up = String::from_utf8_lossy(&m.payload).to_uppercase();
                r2.publish(reply, up.into()).await.unwrap();
            }
        });
        let c = client(&srv).await;
        let reqs = (0..20).map(|i| {
            let c = c.clone();
            async move {
                let resp = timeout(WAIT, c.request("svc.upper", format!("req {i}").into()))
                    .await
                    .expect("request timed out")
                    .expect("request failed");
                (i, resp.payload)
            }
        });
        for (i, payload) in futures::future::join_all(reqs).await {
            assert_eq!(payload, format!("REQ {i}"), "[{}] reply {i}", k.name());
        }
        task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_round_trip() {
    for_each_server_async(|k| async move {
        let srv = start(Launch::new(k)).await;
        let c = client(&srv).await;
        let mut sub = c.subscribe("h").await.unwrap();
        let mut h = HeaderMap::new();
        h.insert("X-Test", "one");
        h.append("X-Multi", "a");
        h.append("X-Multi", "b");
        c.publish_with_headers("h", h, "body".into()).await.unwrap();
        let m = next(k, &mut sub).await;
        assert_eq!(m.payload, "body", "[{}]", k.name());
        let got = m
            .headers
            .unwrap_or_else(|| panic!("[{}] headers lost", k.name()));
        assert_eq!(
            got.get("X-Test").map(|v| v.as_str()),
            Some("one"),
            "[{}]",
            k.name()
        );
        let multi: Vec<&str> = got.get_all("X-Multi").map(|v| v.as_str()).collect();
        assert_eq!(multi, ["a", "b"], "[{}]", k.name());
        // Headers with an empty payload.
        let mut h = HeaderMap::new();
        h.insert("Only", "headers");
        c.publish_with_headers("h", h, Bytes::new()).await.unwrap();
        let m = next(k, &mut sub).await;
        assert!(m.payload.is_empty(), "[{}]", k.name());
        assert_eq!(
            m.headers.and_then(|h| h.get("Only").map(|v| v.to_string())),
            Some("headers".to_string()),
            "[{}]",
            k.name()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_without_responders_fails_fast() {
    for_each_server_async(|k| async move {
        let srv = start(Launch::new(k)).await;
        let c = client(&srv).await;
        // Well under the client's default 10 s request timeout: the 503 must come at once.
        let r = timeout(WAIT, c.request("nobody.home", "anyone?".into()))
            .await
            .unwrap_or_else(|_| panic!("[{}] no 503 within {WAIT:?}", k.name()));
        let e = r.expect_err("a request nobody listens to must fail");
        assert_eq!(
            e.kind(),
            async_nats::RequestErrorKind::NoResponders,
            "[{}] {e}",
            k.name()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_after_max_messages() {
    for_each_server_async(|k| async move {
        let srv = start(Launch::new(k)).await;
        let c = client(&srv).await;
        let mut sub = c.subscribe("u").await.unwrap();
        sub.unsubscribe_after(3).await.unwrap();
        for i in 0..6 {
            c.publish("u", i.to_string().into()).await.unwrap();
        }
        for i in 0..3 {
            assert_eq!(
                next(k, &mut sub).await.payload,
                i.to_string(),
                "[{}]",
                k.name()
            );
        }
        let end = timeout(WAIT, sub.next()).await;
        assert!(
            matches!(end, Ok(None)),
            "[{}] after 3 messages the subscription must end, got {:?}",
            k.name(),
            end.map(|m| m.map(|m| m.payload))
        );
        // The server agrees: a fresh subscriber on the same client still works.
        let mut again = c.subscribe("u").await.unwrap();
        c.publish("u", "later".into()).await.unwrap();
        assert_eq!(next(k, &mut again).await.payload, "later", "[{}]", k.name());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_echo_suppresses_own_messages() {
    for_each_server_async(|k| async move {
        let srv = start(Launch::new(k)).await;
        let quiet = connect_with(&srv, ConnectOptions::new().no_echo()).await;
        let mut sub = quiet.subscribe("e").await.unwrap();
        quiet.publish("e", "own".into()).await.unwrap();
        sync_no_echo(k, &quiet).await;
        let other = client(&srv).await;
        other.publish("e", "theirs".into()).await.unwrap();
        sync(k, &other).await;
        // The first (and only) message must be the other client's.
        assert_eq!(next(k, &mut sub).await.payload, "theirs", "[{}]", k.name());
        assert!(
            timeout(Duration::from_millis(200), sub.next())
                .await
                .is_err(),
            "[{}] an extra message arrived",
            k.name()
        );
        // Without no_echo a client does get its own messages.
        let loud = client(&srv).await;
        let mut s2 = loud.subscribe("e2").await.unwrap();
        loud.publish("e2", "mine".into()).await.unwrap();
        assert_eq!(next(k, &mut s2).await.payload, "mine", "[{}]", k.name());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_delivers_pending_messages_then_closes() {
    for_each_server_async(|k| async move {
        let srv = start(Launch::new(k)).await;
        let c = client(&srv).await;
        let mut sub = c.subscribe("d").await.unwrap();
        sync(k, &c).await;
        let publ = client(&srv).await;
        for i in 0..50 {
            publ.publish("d", i.to_string().into()).await.unwrap();
        }
        sync(k, &publ).await;
        // async-nats drops what it has not read from the socket when a drain completes, so
        // first make sure all 50 have reached the client: its own message comes after them.
        sync(k, &c).await;
        c.drain().await.unwrap();
        let mut got = Vec::new();
        loop {
            match timeout(WAIT, sub.next()).await {
                Ok(Some(m)) => got.push(String::from_utf8_lossy(&m.payload).to_string()),
                Ok(None) => break,
                Err(_) => panic!(
                    "[{}] drained subscription did not end; got {} messages",
                    k.name(),
                    got.len()
                ),
            }
        }
        let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(
            got,
            want,
            "[{}] messages published before the drain",
            k.name()
        );
        // The server is fine afterwards.
        let fresh = client(&srv).await;
        let mut s = fresh.subscribe("d").await.unwrap();
        sync(k, &fresh).await;
        publ.publish("d", "after".into()).await.unwrap();
        assert_eq!(next(k, &mut s).await.payload, "after", "[{}]", k.name());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_server_restarts_on_the_same_port() {
    for_each_server_async(|k| async move {
        let port = free_port();
        let mut srv = start(Launch::new(k).port(port)).await;
        assert_eq!(srv.port(), port, "[{}] -p {port}", k.name());
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let opts = ConnectOptions::new()
            .reconnect_delay_callback(|_| Duration::from_millis(50))
            .event_callback(move |e| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(e);
                }
            });
        let c = connect_with(&srv, opts).await;
        let mut sub = c.subscribe("r").await.unwrap();
        c.publish("r", "before".into()).await.unwrap();
        assert_eq!(next(k, &mut sub).await.payload, "before", "[{}]", k.name());

        // SIGKILL: the next server must still be able to bind the port.
        tokio::task::block_in_place(|| srv.kill());
        wait_for_event(k, &mut events, |e| matches!(e, Event::Disconnected)).await;
        let srv2 = start(Launch::new(k).port(port)).await;
        wait_for_event(k, &mut events, |e| matches!(e, Event::Connected)).await;

        // The subscription was restored and the client works.
        sync(k, &c).await;
        let other = client(&srv2).await;
        other.publish("r", "after".into()).await.unwrap();
        let m = next(k, &mut sub).await;
        assert_eq!(m.payload, "after", "[{}]", k.name());
        let mut s2 = c.subscribe("r2").await.unwrap();
        c.publish("r2", "new sub".into()).await.unwrap();
        assert_eq!(next(k, &mut s2).await.payload, "new sub", "[{}]", k.name());
    })
    .await;
}

async fn wait_for_event(
    k: Kind,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    want: impl Fn(&Event) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = BTreeSet::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if want(&e) => return,
            Ok(Some(e)) => {
                seen.insert(e.to_string());
            }
            _ => panic!(
                "[{}] expected client event did not come; saw {seen:?}",
                k.name()
            ),
        }
    }
}
