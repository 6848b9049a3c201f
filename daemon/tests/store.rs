//! The store, accounts and key authentication against both real databases: SQLite in a temp dir and the
//! PostgreSQL server on 127.0.0.1:5432 (a throw-away database per run; the test fails if the server is down).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use hearth::auth::accounts::{self, AccountError, KeySpec};
use hearth::auth::{AuthError, Authenticator, Role};
use hearth::store::{RequestRecord, Store, StoreError};
use std::time::Duration;

async fn exercise(store: &Store, state: &std::path::Path) {
    // The first admin, once, with a 0600 password file.
    let file = accounts::ensure_initial_admin(store, state)
        .await
        .unwrap()
        .expect("created");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let password = std::fs::read_to_string(&file).unwrap();
    assert!(password.trim().len() >= 20);
    assert!(accounts::ensure_initial_admin(store, state)
        .await
        .unwrap()
        .is_none());
    let admin = store.user_by_name("admin").await.unwrap().unwrap();
    assert_eq!(admin.role, "admin");
    assert!(hearth::auth::secrets::verify_secret(
        password.trim(),
        admin.password_hash.as_deref().unwrap()
    ));

    // Users.
    let alice = accounts::add_user(store, "alice", "member", Some("hunter22!"))
        .await
        .unwrap();
    assert!(!alice.disabled);
    assert!(matches!(
        accounts::add_user(store, "alice", "member", None).await,
        Err(AccountError::Store(StoreError::Conflict(_)))
    ));
    assert!(matches!(
        accounts::add_user(store, "Bad Name", "member", None).await,
        Err(AccountError::BadUserName(_))
    ));
    assert!(matches!(
        accounts::add_user(store, "bob", "root", None).await,
        Err(AccountError::BadRole(_))
    ));
    assert!(matches!(
        accounts::add_user(store, "bob", "member", Some("short")).await,
        Err(AccountError::WeakPassword)
    ));
    let names: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["admin", "alice"]);

    // Keys and authentication.
    let auth = Authenticator::new(store.clone());
    let (rec, key) = accounts::create_key(
        store,
        KeySpec {
            user: "alice",
            name: "laptop",
            models: Some(vec!["smollm2".into()]),
            expires_in: None,
        },
    )
    .await
    .unwrap();
    assert!(key.starts_with(&format!("hth_{}_", rec.id)));
    assert_eq!(rec.models.as_deref(), Some(&["smollm2".to_owned()][..]));
    let p = auth
        .authenticate(Some(&format!("Bearer {key}")))
        .await
        .unwrap();
    assert_eq!((p.user_name.as_str(), p.role), ("alice", Role::Member));
    assert!(p.may_use("smollm2") && !p.may_use("gemma3"));
    // Second use hits the verified-key cache and still sees the store.
    assert_eq!(auth.verify_key(&key).await.unwrap(), p);
    // Change the secret's last character to a different one (a fixed replacement would equal it 1 time in 36).
    let last = if key.ends_with('x') { "y" } else { "x" };
    let wrong = format!("{}{last}", &key[..key.len() - 1]);
    assert!(matches!(
        auth.verify_key(&wrong).await,
        Err(AuthError::Invalid)
    ));
    assert!(matches!(
        auth.authenticate(None).await,
        Err(AuthError::Missing)
    ));
    assert!(matches!(
        auth.authenticate(Some("Basic abc")).await,
        Err(AuthError::Missing)
    ));
    assert!(matches!(
        auth.verify_key("hth_nothing").await,
        Err(AuthError::Invalid)
    ));

    // Disabling the user stops the key at once, enabling restores it.
    accounts::update_user(store, "alice", Some(true), None, None)
        .await
        .unwrap();
    assert!(matches!(
        auth.verify_key(&key).await,
        Err(AuthError::Disabled)
    ));
    accounts::update_user(store, "alice", Some(false), None, None)
        .await
        .unwrap();
    auth.verify_key(&key).await.unwrap();

    // Revocation is immediate, even with the key in the cache and through another Authenticator (the CLI).
    accounts::revoke_key(store, &rec.id).await.unwrap();
    assert!(matches!(
        auth.verify_key(&key).await,
        Err(AuthError::Revoked)
    ));
    assert!(matches!(
        accounts::revoke_key(store, &rec.id).await,
        Err(AccountError::NoSuchKey(_))
    ));

    // Expiry.
    let (old, old_key) = accounts::create_key(
        store,
        KeySpec {
            user: "alice",
            name: "",
            models: None,
            expires_in: Some(Duration::ZERO),
        },
    )
    .await
    .unwrap();
    assert!(old.expires_at.is_some());
    assert!(matches!(
        auth.verify_key(&old_key).await,
        Err(AuthError::Expired)
    ));
    assert!(matches!(
        accounts::create_key(
            store,
            KeySpec {
                user: "nobody",
                name: "",
                models: None,
                expires_in: None
            }
        )
        .await,
        Err(AccountError::NoSuchUser(_))
    ));
    let keys = store.list_keys(Some("alice")).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.user_name == "alice"));
    assert_eq!(store.list_keys(None).await.unwrap().len(), 2);

    // last_used_at is written (asynchronously, at most once a minute).
    let (k3, key3) = accounts::create_key(
        store,
        KeySpec {
            user: "admin",
            name: "",
            models: None,
            expires_in: None,
        },
    )
    .await
    .unwrap();
    auth.verify_key(&key3).await.unwrap();
    let mut used = None;
    for _ in 0..50 {
        used = store.key(&k3.id).await.unwrap().unwrap().last_used_at;
        if used.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(used.is_some());

    // The request ledger.
    let r = RequestRecord {
        id: "r1".into(),
        user_id: alice.id.clone(),
        key_id: Some(rec.id.clone()),
        model: "smollm2".into(),
        endpoint: "chat".into(),
        prompt_tokens: 12,
        completion_tokens: 34,
        finish_reason: "stop".into(),
        started_at: 1_700_000_000,
        duration_ms: 56,
        status: "ok".into(),
        charged_tokens: 46,
    };
    store.record_request(&r).await.unwrap();
    assert_eq!(store.recent_requests(&alice.id, 10).await.unwrap(), vec![r]);
    store.ping().await.unwrap();
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = hearth::store::sqlite_url(&dir.path().join("state"));
    let store = Store::connect(&url).await.unwrap();
    let db = dir.path().join("state/hearth.db");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&db).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the database holds hashes: owner-only");
    exercise(&store, dir.path()).await;
    store.close().await;
    // Migrations are idempotent: reopening applies nothing and keeps the data.
    let again = Store::connect(&url).await.unwrap();
    assert_eq!(again.list_users().await.unwrap().len(), 2);
}

#[tokio::test]
async fn postgres_store() {
    let pg = common::PgDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&pg.url).await.unwrap();
    assert_eq!(store.backend(), hearth::store::Backend::Postgres);
    exercise(&store, dir.path()).await;
    store.close().await;
    let again = Store::connect(&pg.url).await.unwrap();
    assert_eq!(again.list_users().await.unwrap().len(), 2);
    again.close().await;
}
