//! The store, accounts and key authentication against both real databases: SQLite in a temp dir and the
//! PostgreSQL server on 127.0.0.1:5432 (a throw-away database per run; the test fails if the server is down).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;

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
    batches(store, &alice.id).await;
    sessions(store).await;
    store.ping().await.unwrap();
}

/// Dashboard sessions: sign-in, the cookie's digest at rest, sliding expiry, sign-out, ending a user's other
/// sessions, the first admin's forced password change — the same statements on both databases.
async fn sessions(store: &Store) {
    let admin = store.user_by_name("admin").await.unwrap().unwrap();
    assert!(
        admin.must_change_password,
        "the generated first password must be replaced"
    );
    accounts::add_user(store, "dora", "member", Some("dora-password"))
        .await
        .unwrap();
    let auth = Authenticator::new(store.clone());
    assert!(matches!(
        auth.login("dora", "wrong-password", None).await,
        Err(hearth::auth::sessions::LoginError::BadCredentials)
    ));
    let one = auth.login("dora", "dora-password", None).await.unwrap();
    let two = auth.login("dora", "dora-password", None).await.unwrap();
    assert_ne!(one.cookie, two.cookie);
    let s1 = auth.verify_session(&one.cookie).await.unwrap();
    assert_eq!(s1.principal.user_name, "dora");
    assert_eq!(s1.principal.role, Role::Member);
    assert_eq!(s1.csrf, one.csrf);
    assert!(!s1.id_hash.contains(&one.cookie), "only a digest is stored");
    assert!(matches!(
        auth.verify_session("not-a-session").await,
        Err(AuthError::SessionEnded)
    ));
    // A password change keeps the session that made it and ends the others.
    let s2 = auth.verify_session(&two.cookie).await.unwrap();
    assert_eq!(
        store
            .delete_user_sessions(&s2.principal.user_id, Some(&s2.id_hash))
            .await
            .unwrap(),
        1
    );
    assert!(auth.verify_session(&one.cookie).await.is_err());
    assert!(auth.verify_session(&two.cookie).await.is_ok());
    auth.logout(&s2.id_hash).await.unwrap();
    assert!(auth.verify_session(&two.cookie).await.is_err());
    // Expired rows are swept.
    let three = auth.login("dora", "dora-password", None).await.unwrap();
    let s3 = auth.verify_session(&three.cookie).await.unwrap();
    store.touch_session(&s3.id_hash, 1, 2).await.unwrap();
    assert!(
        store
            .purge_expired_sessions(hearth::store::now())
            .await
            .unwrap()
            >= 1
    );
    assert!(auth.verify_session(&three.cookie).await.is_err());
    // Setting a password clears the forced change.
    accounts::set_password(store, "admin", "admin-chosen-pw")
        .await
        .unwrap();
    assert!(
        !store
            .user_by_name("admin")
            .await
            .unwrap()
            .unwrap()
            .must_change_password
    );
}

/// Files, a batch's lines (each finishes once, with its batch's counters), finalization, paging, settings and
/// schedules — the same statements on both databases.
async fn batches(store: &Store, owner: &str) {
    use hearth::store::{BatchRecord, FileRecord, NewLine, ScheduleRecord};
    let f = FileRecord {
        id: "file-1".into(),
        owner_id: owner.into(),
        purpose: "batch".into(),
        filename: "in.jsonl".into(),
        bytes: 5,
        created_at: 10,
    };
    store.insert_file(&f, "{}\n{}").await.unwrap();
    assert_eq!(store.file("file-1").await.unwrap(), Some(f.clone()));
    assert_eq!(
        store.file_content("file-1").await.unwrap().as_deref(),
        Some("{}\n{}")
    );
    assert_eq!(
        store.list_files(Some(owner)).await.unwrap(),
        vec![f.clone()]
    );
    assert!(store.list_files(Some("nobody")).await.unwrap().is_empty());
    for (i, id) in ["batch_a", "batch_b", "batch_c"].iter().enumerate() {
        let b = BatchRecord {
            id: (*id).into(),
            owner_id: owner.into(),
            endpoint: "/v1/chat/completions".into(),
            input_file_id: "file-1".into(),
            completion_window: "24h".into(),
            status: "validating".into(),
            created_at: 100 + i as i64,
            expires_at: 100_000,
            ..Default::default()
        };
        let lines: Vec<NewLine> = (1..=3)
            .map(|n| NewLine {
                line_no: n,
                custom_id: format!("c{n}"),
                body: "{}".into(),
                failed: (n == 2).then(|| "{\"error\":1}".to_owned()),
            })
            .collect();
        store.create_batch(&b, &lines).await.unwrap();
    }
    let b = store.batch("batch_a").await.unwrap().unwrap();
    assert_eq!((b.total, b.completed, b.failed), (3, 0, 1));
    let pending = store.pending_lines("batch_a", 10, 0).await.unwrap();
    assert_eq!(
        pending.iter().map(|l| l.line_no).collect::<Vec<_>>(),
        [1, 3]
    );
    assert!(store.finish_line("batch_a", 1, true, "out1").await.unwrap());
    assert!(
        !store
            .finish_line("batch_a", 1, true, "again")
            .await
            .unwrap(),
        "once only"
    );
    assert_eq!(store.count_pending_lines("batch_a").await.unwrap(), 1);
    store
        .set_batch_status("batch_a", "in_progress", 200)
        .await
        .unwrap();
    let b = store.batch("batch_a").await.unwrap().unwrap();
    assert_eq!(
        (b.status.as_str(), b.in_progress_at, b.completed),
        ("in_progress", Some(200), 1)
    );
    assert_eq!(
        store.line_results("batch_a").await.unwrap(),
        vec![
            (true, "out1".to_owned()),
            (false, "{\"error\":1}".to_owned())
        ]
    );
    let out = FileRecord {
        id: "file-out".into(),
        purpose: "batch_output".into(),
        filename: "batch_a_output.jsonl".into(),
        created_at: 300,
        ..f.clone()
    };
    store
        .finalize_batch("batch_a", "completed", Some((&out, "out1\n")), None, 300)
        .await
        .unwrap();
    let b = store.batch("batch_a").await.unwrap().unwrap();
    assert_eq!(
        (
            b.status.as_str(),
            b.output_file_id.as_deref(),
            b.error_file_id,
            b.completed_at
        ),
        ("completed", Some("file-out"), None, Some(300))
    );
    let unfinished: Vec<String> = store
        .unfinished_batches()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(unfinished, ["batch_b", "batch_c"]);
    // Newest first, paged with `after`.
    let page = store.list_batches(Some(owner), 2, None).await.unwrap();
    assert_eq!(
        page.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        ["batch_c", "batch_b"]
    );
    let next = store.list_batches(None, 2, Some("batch_b")).await.unwrap();
    assert_eq!(
        next.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        ["batch_a"]
    );
    // Settings and schedules.
    store
        .set_setting("batch_window", Some("01:00-06:00"))
        .await
        .unwrap();
    store
        .set_setting("batch_window", Some("02:00-05:00"))
        .await
        .unwrap();
    assert_eq!(
        store.setting("batch_window").await.unwrap().as_deref(),
        Some("02:00-05:00")
    );
    store.set_setting("batch_window", None).await.unwrap();
    assert_eq!(store.setting("batch_window").await.unwrap(), None);
    let s = ScheduleRecord {
        name: "nightly".into(),
        cron: "0 2 * * *".into(),
        input_file_id: "file-1".into(),
        owner_id: owner.into(),
        owner: "alice".into(),
        endpoint: "/v1/chat/completions".into(),
        enabled: true,
        created_at: 5,
        last_run_at: None,
        last_batch_id: None,
    };
    store.insert_schedule(&s).await.unwrap();
    assert!(matches!(
        store.insert_schedule(&s).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store
        .update_schedule("nightly", None, Some(false))
        .await
        .unwrap());
    store
        .schedule_ran("nightly", 77, Some("batch_c"))
        .await
        .unwrap();
    let got = store.schedule("nightly").await.unwrap().unwrap();
    assert_eq!(
        (got.enabled, got.last_run_at, got.owner.as_str()),
        (false, Some(77), "alice")
    );
    assert_eq!(store.schedules().await.unwrap().len(), 1);
    assert!(store.delete_schedule("nightly").await.unwrap());
    assert!(!store.delete_schedule("nightly").await.unwrap());
    assert!(store.delete_file("file-1").await.unwrap());
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
    assert_eq!(again.list_users().await.unwrap().len(), 3);
}

#[tokio::test]
async fn postgres_store() {
    let pg = harness::PgDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&pg.url).await.unwrap();
    assert_eq!(store.backend(), hearth::store::Backend::Postgres);
    exercise(&store, dir.path()).await;
    store.close().await;
    let again = Store::connect(&pg.url).await.unwrap();
    assert_eq!(again.list_users().await.unwrap().len(), 3);
    again.close().await;
}
