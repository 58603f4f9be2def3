//! A call's read scope hands its write what it looked up as a value in the call's
//! `RequestContext` (`coffer_store::Handoff`), never through the thread: each call's
//! first write gets its own call's handoff, and no other write gets it.

use crate::pipeline::{Caller, Credentials, call};
use crate::{App, Config, KeyRing, RequestContext};
use coffer_core::Scope;
use coffer_crypto::MasterKey;
use coffer_store::{Handoff, Latency, MemoryStore, Store, StoreResult, WriteTxn};
use coffer_wire::operation::{Operation, SecretsManagerOp as Sm};
use std::sync::{Arc, Mutex};

/// A memory store that says it is across a network (so the pipeline authorizes a
/// mutating call in a read scope before its handler, as on PostgreSQL), numbers the
/// handoff of each read scope (1, 2, ...), and notes what each write was handed.
#[derive(Default)]
struct Handing {
    inner: MemoryStore,
    scopes: Mutex<u64>,
    /// Per write, in order: the number of the handoff it was given, if any.
    writes: Mutex<Vec<Option<u64>>>,
}

impl Store for Handing {
    fn latency(&self) -> Latency {
        Latency::Network
    }

    crate::test_store_wrappers::pass_reads_and_snapshots_to_inner!();

    fn read_scope(&self, f: &mut dyn FnMut()) -> Handoff {
        f();
        let mut scopes = self.scopes.lock().unwrap();
        *scopes += 1;
        Handoff::new(*scopes)
    }

    fn write(
        &self,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        self.write_after(Handoff::none(), f)
    }

    fn write_after(
        &self,
        handoff: Handoff,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        self.writes.lock().unwrap().push(handoff.open::<u64>());
        self.inner.write(f)
    }

    fn describe(&self) -> String {
        "handing".to_owned()
    }
}

fn app() -> (Arc<App>, Arc<Handing>) {
    let store = Arc::new(Handing::default());
    let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
    let app = App::new(store.clone(), keys, Config::default());
    store.writes.lock().unwrap().clear();
    (app, store)
}

fn caller() -> Caller {
    let scope = Scope::new("111122223333", "eu-west-1");
    let credentials = Credentials::Unverified { scope, access_key_id: "AKIDHANDOFF".into() };
    Caller::console(credentials, None, "test", false)
}

fn handed(store: &Handing) -> Vec<u64> {
    store.writes.lock().unwrap().iter().flatten().copied().collect()
}

/// Four calls in turn on one thread: a mutating call's write, and a read's
/// LastAccessedDate write, each get their own call's handoff; a read that writes nothing
/// (DescribeSecret, scope 2) hands nothing to the next call's write (PutSecretValue's,
/// which gets its own, 3); the calls' other writes (their events) get none.
#[test]
fn each_calls_write_gets_its_own_calls_handoff_and_no_other() {
    let (app, store) = app();
    let caller = caller();
    let body = |json: &str| json.as_bytes().to_vec();
    let token = |n: u8| format!("00000000-0000-4000-8000-00000000000{n}");
    let create =
        format!(r#"{{"Name":"h","SecretString":"v","ClientRequestToken":"{}"}}"#, token(1));
    call(&app, &caller, Operation::from(Sm::CreateSecret), body(&create)).unwrap();
    assert_eq!(handed(&store), [1]);
    call(&app, &caller, Operation::from(Sm::DescribeSecret), body(r#"{"SecretId":"h"}"#)).unwrap();
    assert_eq!(handed(&store), [1]);
    let put =
        format!(r#"{{"SecretId":"h","SecretString":"w","ClientRequestToken":"{}"}}"#, token(2));
    call(&app, &caller, Operation::from(Sm::PutSecretValue), body(&put)).unwrap();
    assert_eq!(handed(&store), [1, 3]);
    call(&app, &caller, Operation::from(Sm::GetSecretValue), body(r#"{"SecretId":"h"}"#)).unwrap();
    assert_eq!(handed(&store), [1, 3, 4]);
    assert!(store.writes.lock().unwrap().iter().any(Option::is_none), "the events' writes");
}

/// A call's handoff goes to its first write only (a later one would miss the first one's
/// changes in it), and a write no call makes gets none.
#[test]
fn a_calls_handoff_goes_to_its_first_write_only() {
    let (app, store) = app();
    let mut ctx =
        RequestContext::new(Scope::new("111122223333", "eu-west-1"), "AKID".into(), "r".into());
    ctx.hand(Handoff::new(7u64));
    let put =
        |tx: &mut crate::Txn<'_>| tx.put_record("test", "k", b"v").map_err(crate::store_error);
    app.write(&ctx, put).unwrap();
    app.write(&ctx, put).unwrap();
    app.write_unrecorded(put).unwrap();
    assert_eq!(*store.writes.lock().unwrap(), [Some(7), None, None]);
}
