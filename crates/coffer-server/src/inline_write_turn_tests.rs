//! Mutating calls on a store in memory run on the async workers and take their turn
//! there (`App::inline_write_turn`): a write that must wait for another's waits without
//! holding a worker, so the workers go on serving everything else.

use crate::{App, Config, KeyRing};
use axum::body::Body;
use axum::extract::ConnectInfo;
use coffer_crypto::MasterKey;
use coffer_store::{MemoryStore, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;
use tower_service::Service;

/// A `--dev` call of the Secrets Manager API, as the AWS CLI sends it.
fn dev_call(operation: &str, body: String) -> axum::http::Request<Body> {
    let mut request = axum::http::Request::builder()
        .method("POST")
        .uri("/")
        .header("x-amz-target", format!("secretsmanager.{operation}"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-date", "20240101T000000Z")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/\
             secretsmanager/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
        )
        .body(Body::from(body))
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    request
}

fn get(uri: &str) -> axum::http::Request<Body> {
    axum::http::Request::builder().uri(uri).body(Body::empty()).unwrap()
}

/// Two workers; the store's lock held by another thread; two CreateSecret calls sent.
/// Before the turn, each blocked its worker on the store's lock and nothing else was
/// served until the lock was let go; with it, the second waits for the turn without a
/// worker, and a probe is answered meanwhile. Both writes are done once the lock goes.
#[test]
fn a_write_waiting_for_another_holds_no_worker() {
    let store = Arc::new(MemoryStore::new());
    let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
    let directory = crate::iam::Iam::open(&MasterKey::generate(), store.as_ref()).unwrap();
    let app = App::dev(store.clone(), keys, Config::default(), directory);
    assert!(app.writes_inline(), "a store in memory runs its writes on the workers");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let router = crate::http::router(app);

    // Another thread holds the store's lock until told to let go.
    let (entered, held) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let store = store.clone();
        move || {
            let mut hold = move |_: &mut dyn coffer_store::WriteTxn| {
                entered.send(()).unwrap();
                released.recv().unwrap();
                Ok(())
            };
            store.write(&mut hold).unwrap()
        }
    });
    held.recv().unwrap();

    let writes: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|name| {
            let mut router = router.clone();
            let body = format!(r#"{{"Name":"{name}","SecretString":"v","ClientRequestToken":"{name}-0000000000000000000000000000000"}}"#);
            runtime.spawn(async move { router.call(dev_call("CreateSecret", body)).await })
        })
        .collect();
    // Time for both writes to reach the store's lock or the turn (a write that has not
    // reached either yet holds no worker, so this only lets the test fail where it must).
    std::thread::sleep(Duration::from_millis(300));

    // Spawned, to be served by a worker (what `block_on` runs, the calling thread runs),
    // and waited for on this thread: with both workers blocked no runtime timer fires.
    let mut probe = router.clone();
    let (answer, answered) = mpsc::channel();
    runtime.spawn(async move {
        let _ = answer.send(probe.call(get("/health")).await.map(|r| r.status()));
    });
    let answered = answered.recv_timeout(Duration::from_secs(20));
    release.send(()).unwrap();
    let answered = answered.expect("a probe is answered while a write waits for the store");
    assert_eq!(answered.unwrap(), 200);

    holder.join().unwrap();
    for write in writes {
        let response = runtime.block_on(write).unwrap().unwrap();
        let status = response.status();
        let body = runtime.block_on(axum::body::to_bytes(response.into_body(), 1 << 20)).unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
}
