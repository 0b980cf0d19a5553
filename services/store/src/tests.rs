use analyzer_domain::tenants::{TenantId, Tier};
use analyzer_domain::usage;
use analyzer_runtime::lanes;
use sqlx::Row as _;

use super::*;
use crate::contexts::Contexts;
use crate::documents::STORAGE_TOTALS;
use analyzer_runtime::lanes::{Seat, seated};

/// The configuration of a SQLite database in `dir`.
fn sqlite_in(dir: &Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_owned(),
        database_url: None,
        max_connections: 16,
        guard: DbGuardConfig::default(),
    }
}

/// A migrated SQLite database in `dir` with one premium tenant.
pub(crate) async fn sqlite_with_tenant(dir: &Path) -> (Db, TenantId) {
    let db = Db::connect(&sqlite_in(dir)).await.expect("connect");
    db.migrate().await.expect("migrate");
    let tenant = TenantId::generate();
    db.insert_tenant(&tenant, "acme", Tier::Premium)
        .await
        .expect("tenant");
    (db, tenant)
}

/// A one-chunk document of four bytes of text.
pub(crate) fn stored(id: &str, revision: &str) -> StoredDocument {
    StoredDocument {
        id: id.to_owned(),
        collection: "default".into(),
        revision: revision.to_owned(),
        text: "text".into(),
        metadata: serde_json::json!({}),
        chunk_count: 1,
        byte_size: 4,
        vector_bytes: 10,
        created_at: 0,
        updated_at: 0,
        file: None,
    }
}

/// Store `doc` as an ingest does: its revision recorded as pending
/// first. Answers the revisions it superseded.
pub(crate) async fn ingest(
    db: &Db,
    tenant: &TenantId,
    doc: StoredDocument,
    budget: u64,
) -> Result<Vec<VectorRevision>, StoreError> {
    db.record_pending(tenant, &[vectors_of(&doc)]).await?;
    db.upsert_documents(tenant, &[doc], budget).await
}

fn vectors_of(doc: &StoredDocument) -> VectorRevision {
    VectorRevision {
        document_id: doc.id.clone(),
        revision: doc.revision.clone(),
        chunk_count: doc.chunk_count,
    }
}

#[tokio::test]
async fn a_claimed_revision_can_never_commit_and_a_committed_one_cannot_be_claimed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, tenant) = sqlite_with_tenant(dir.path()).await;
    let given_up = stored("a", "r1");
    db.record_pending(&tenant, &[vectors_of(&given_up)])
        .await
        .expect("record");
    let claimed = db
        .claim_pending(&tenant, &[vectors_of(&given_up)])
        .await
        .expect("claim");
    assert_eq!(claimed, [vectors_of(&given_up)]);
    assert!(matches!(
        db.upsert_documents(&tenant, &[given_up], u64::MAX).await,
        Err(StoreError::Abandoned)
    ));
    assert!(db.document(&tenant, "a").await.expect("read").is_none());

    let kept = stored("b", "r1");
    ingest(&db, &tenant, kept.clone(), u64::MAX)
        .await
        .expect("ingest");
    assert!(
        db.claim_pending(&tenant, &[vectors_of(&kept)])
            .await
            .expect("claim")
            .is_empty(),
        "a committed revision is not pending any more"
    );
    assert!(db.document(&tenant, "b").await.expect("read").is_some());
    db.close().await;
}

#[tokio::test]
async fn replaced_and_deleted_revisions_are_recorded_for_removal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, tenant) = sqlite_with_tenant(dir.path()).await;
    let first = stored("a", "r1");
    assert!(
        ingest(&db, &tenant, first.clone(), u64::MAX)
            .await
            .expect("ingest")
            .is_empty()
    );
    let second = stored("a", "r2");
    let superseded = ingest(&db, &tenant, second.clone(), u64::MAX)
        .await
        .expect("replace");
    assert_eq!(superseded, [vectors_of(&first)]);
    let deleted = db.delete_document(&tenant, "a").await.expect("delete");
    assert_eq!(deleted, Some(vectors_of(&second)));
    assert_eq!(db.delete_document(&tenant, "a").await.expect("again"), None);

    let later = now_millis() + 1;
    let due = db.due_cleanups(later, later, 10).await.expect("due");
    let due: Vec<_> = due
        .iter()
        .map(|d| (d.vectors.revision.as_str(), d.pending))
        .collect();
    assert_eq!(due, [("r1", false), ("r2", false)]);
    db.finish_cleanups(&tenant, &[vectors_of(&first), vectors_of(&second)])
        .await
        .expect("finish");
    assert!(
        db.due_cleanups(later, later, 10)
            .await
            .expect("due")
            .is_empty()
    );
    db.close().await;
}

/// A context that found no journal entry (which the SQLite server's
/// count overrides).
const SETTLED: SearchContext = SearchContext {
    generation: 0,
    collection_exists: true,
    unsettled: false,
};

#[tokio::test]
async fn a_search_skips_its_check_only_if_nothing_was_unsettled_before_or_during_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, tenant) = sqlite_with_tenant(dir.path()).await;
    let db = db.with_context_cache(dir.path()).expect("the only server");
    let first = db.settled_mark(&tenant, &SETTLED);
    // Without the server's count (the CLI, or PostgreSQL), the context decides.
    let other_dir = tempfile::tempdir().expect("temp dir");
    let (plain, _) = sqlite_with_tenant(other_dir.path()).await;
    assert!(plain.stayed_settled(&tenant, plain.settled_mark(&tenant, &SETTLED)));
    let unsettled = SearchContext {
        unsettled: true,
        ..SETTLED
    };
    assert!(!plain.stayed_settled(&tenant, plain.settled_mark(&tenant, &unsettled)));
    plain.close().await;
    assert!(db.stayed_settled(&tenant, first), "nothing written yet");

    // An ingest: unsettled from its pending record to its commit.
    let doc = stored("a", "r1");
    db.record_pending(&tenant, &[vectors_of(&doc)])
        .await
        .expect("record");
    assert!(!db.stayed_settled(&tenant, first));
    assert!(!db.stayed_settled(&tenant, db.settled_mark(&tenant, &SETTLED)));
    db.upsert_documents(&tenant, std::slice::from_ref(&doc), u64::MAX)
        .await
        .expect("commit");
    assert!(
        !db.stayed_settled(&tenant, first),
        "it began during the search"
    );
    let settled = db.settled_mark(&tenant, &SETTLED);
    assert!(db.stayed_settled(&tenant, settled));

    // A delete: unsettled until its vectors are gone and forgotten.
    let removed = db
        .delete_document(&tenant, "a")
        .await
        .expect("delete")
        .expect("it was there");
    assert!(!db.stayed_settled(&tenant, db.settled_mark(&tenant, &SETTLED)));
    db.finish_cleanups(&tenant, &[removed])
        .await
        .expect("finish");
    assert!(db.stayed_settled(&tenant, db.settled_mark(&tenant, &SETTLED)));
    assert!(!db.stayed_settled(&tenant, settled));
    // Deleting what is not there leaves nothing unsettled.
    assert_eq!(
        db.delete_document(&tenant, "a").await.expect("delete"),
        None
    );
    assert!(db.stayed_settled(&tenant, db.settled_mark(&tenant, &SETTLED)));

    // A restart counts what the journal holds.
    db.record_pending(&tenant, &[vectors_of(&stored("b", "r1"))])
        .await
        .expect("record");
    db.close().await;
    drop(db);
    let again = Db::connect(&sqlite_in(dir.path()))
        .await
        .expect("connect")
        .with_context_cache(dir.path())
        .expect("the only server");
    again.load_unsettled().await.expect("load");
    assert!(!again.stayed_settled(&tenant, again.settled_mark(&tenant, &SETTLED)));
    again.close().await;
}

#[tokio::test]
async fn the_tenants_count_of_journal_entries_follows_every_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, tenant) = sqlite_with_tenant(dir.path()).await;
    let unsettled = async || {
        db.read_search_context(&tenant, "default")
            .await
            .expect("read")
            .unsettled
    };
    assert!(!unsettled().await);
    let first = stored("a", "r1");
    db.record_pending(&tenant, &[vectors_of(&first)])
        .await
        .expect("record");
    assert!(unsettled().await, "pending");
    db.upsert_documents(&tenant, std::slice::from_ref(&first), u64::MAX)
        .await
        .expect("commit");
    assert!(!unsettled().await, "committed");
    let old = ingest(&db, &tenant, stored("a", "r2"), u64::MAX)
        .await
        .expect("replace");
    assert!(unsettled().await, "the replaced revision is to be removed");
    db.finish_cleanups(&tenant, &old).await.expect("finish");
    assert!(!unsettled().await, "removed");
    let gone = db
        .delete_document(&tenant, "a")
        .await
        .expect("delete")
        .expect("it was there");
    assert!(unsettled().await, "the deleted revision is to be removed");
    let given_up = stored("b", "r1");
    db.record_pending(&tenant, &[vectors_of(&given_up)])
        .await
        .expect("record");
    let claimed = db
        .claim_pending(&tenant, &[vectors_of(&given_up)])
        .await
        .expect("claim");
    db.finish_cleanups(&tenant, &claimed).await.expect("finish");
    db.finish_cleanups(&tenant, std::slice::from_ref(&gone))
        .await
        .expect("finish");
    db.finish_cleanups(&tenant, &[gone])
        .await
        .expect("twice is once");
    assert!(!unsettled().await, "all removed");
    db.close().await;
}

#[tokio::test]
async fn a_young_pending_revision_is_not_due() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, tenant) = sqlite_with_tenant(dir.path()).await;
    let doc = stored("a", "r1");
    db.record_pending(&tenant, &[vectors_of(&doc)])
        .await
        .expect("record");
    let now = now_millis();
    assert!(
        db.due_cleanups(now + 1, now - 60_000, 10)
            .await
            .expect("due")
            .is_empty()
    );
    let due = db.due_cleanups(now + 1, now + 1, 10).await.expect("due");
    assert_eq!(due.len(), 1);
    assert!(due[0].pending);
    assert_eq!(due[0].tenant, tenant);
    db.close().await;
}

#[tokio::test]
async fn current_revisions_name_only_the_tenants_stored_documents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, tenant) = sqlite_with_tenant(dir.path()).await;
    ingest(&db, &tenant, stored("a", "r1"), u64::MAX)
        .await
        .expect("ingest");
    let other = TenantId::generate();
    db.insert_tenant(&other, "other", Tier::Standard)
        .await
        .expect("tenant");
    ingest(&db, &other, stored("b", "r9"), u64::MAX)
        .await
        .expect("ingest");
    let found = db
        .current_revisions(&tenant, &["a", "b", "missing"])
        .await
        .expect("read");
    assert_eq!(found.len(), 1);
    assert_eq!(found["a"], "r1");
    db.close().await;
}

#[test]
fn a_context_read_before_a_write_is_never_kept_after_it() {
    let contexts = Contexts::default();
    let tenant = TenantId::generate();
    let old = SearchContext {
        generation: 1,
        collection_exists: true,
        unsettled: false,
    };
    // A read starts (epoch 0), a write lands, the read ends: not kept.
    let epoch = contexts.get(&tenant, "default").expect_err("nothing yet");
    contexts.invalidate(&tenant);
    contexts.store(&tenant, "default", epoch, old);
    let epoch = contexts
        .get(&tenant, "default")
        .expect_err("the stale read was dropped");
    // A read under the current epoch is kept until the next write.
    let new = SearchContext {
        generation: 2,
        collection_exists: true,
        unsettled: false,
    };
    contexts.store(&tenant, "default", epoch, new);
    assert_eq!(contexts.get(&tenant, "default"), Ok(new));
    contexts.invalidate(&tenant);
    assert!(contexts.get(&tenant, "default").is_err());
    // Missing collections are not kept (their names are the caller's).
    let epoch = contexts.get(&tenant, "nope").expect_err("absent");
    contexts.store(
        &tenant,
        "nope",
        epoch,
        SearchContext {
            generation: 2,
            collection_exists: false,
            unsettled: false,
        },
    );
    assert!(contexts.get(&tenant, "nope").is_err());
}

#[tokio::test]
async fn an_in_memory_context_follows_every_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = sqlite_in(dir.path());
    let db = Db::connect(&config)
        .await
        .expect("connect")
        .with_context_cache(dir.path())
        .expect("the only server");
    assert!(
        Db::connect(&config)
            .await
            .expect("connect")
            .with_context_cache(dir.path())
            .is_err(),
        "a second server on the same data dir is refused"
    );
    db.migrate().await.expect("migrate");
    let tenant = TenantId::generate();
    db.insert_tenant(&tenant, "acme", Tier::Premium)
        .await
        .expect("tenant");
    let doc = |id: &str| stored(id, "r1");
    ingest(&db, &tenant, doc("a"), u64::MAX)
        .await
        .expect("ingest");
    let first = db.search_context(&tenant, "default").await.expect("read");
    assert!(first.collection_exists);
    assert_eq!(
        db.search_context(&tenant, "default").await.ok(),
        Some(first)
    );
    ingest(&db, &tenant, doc("b"), u64::MAX)
        .await
        .expect("ingest");
    let second = db.search_context(&tenant, "default").await.expect("read");
    assert!(second.generation > first.generation);
    db.bump_generation(&tenant).await.expect("bump");
    let third = db.search_context(&tenant, "default").await.expect("read");
    assert!(third.generation > second.generation);
    assert!(
        db.delete_document(&tenant, "a")
            .await
            .expect("delete")
            .is_some()
    );
    let fourth = db.search_context(&tenant, "default").await.expect("read");
    assert!(fourth.generation > third.generation);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_sqlite_all_land() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, tenant) = sqlite_with_tenant(dir.path()).await;
    let before = db.search_context(&tenant, "default").await.expect("read");
    // Far more writers than connections, all at once: ingests of new
    // documents, ingests replacing one document, generation bumps.
    let writes = (0..300).map(|i| {
        let (db, tenant) = (db.clone(), tenant.clone());
        tokio::spawn(async move {
            let id = if i % 3 == 0 {
                "shared".to_owned()
            } else {
                format!("d{i}")
            };
            if i % 10 == 9 {
                return db.bump_generation(&tenant).await;
            }
            let doc = stored(&id, &format!("r{i}"));
            ingest(&db, &tenant, doc, u64::MAX).await.map(drop)
        })
    });
    for write in futures::future::join_all(writes).await {
        write.expect("task").expect("every write lands");
    }
    let after = db.search_context(&tenant, "default").await.expect("read");
    assert_eq!(
        after.generation - before.generation,
        300,
        "one bump per write"
    );
    let totals = db.storage_totals(&tenant).await.expect("totals");
    // 30 bumps, 90 writes of "shared", 180 other documents.
    assert_eq!(totals.documents, 181);
    assert_eq!(
        db.usage(&tenant).await.expect("usage")[usage::metrics::DOCUMENTS_INGESTED],
        270
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_wait_for_their_turn_without_a_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, tenant) = sqlite_with_tenant(dir.path()).await;
    let turn = db.write_turn().await.expect("SQLite writers take turns");
    // Four times the pool's connections queue behind the held turn.
    let writers = 4 * db.pool.options().get_max_connections();
    let writes: Vec<_> = (0..writers)
        .map(|i| {
            let (db, tenant) = (db.clone(), tenant.clone());
            tokio::spawn(async move {
                ingest(&db, &tenant, stored(&format!("d{i}"), "r1"), u64::MAX).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        writes.iter().all(|w| !w.is_finished()),
        "no write lands out of turn"
    );
    assert_eq!(
        db.pool_stats()[0].in_use,
        0,
        "waiting writers hold no connection"
    );
    // So readers are served meanwhile.
    assert_eq!(db.storage_totals(&tenant).await.expect("read").documents, 0);
    drop(turn);
    for write in futures::future::join_all(writes).await {
        write.expect("task").expect("every write lands");
    }
    assert_eq!(
        db.storage_totals(&tenant).await.expect("read").documents,
        i64::from(writers)
    );
    db.close().await;
}

#[tokio::test]
async fn storage_totals_read_only_the_covering_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::connect(&sqlite_in(dir.path())).await.expect("connect");
    db.migrate().await.expect("migrate");
    let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {STORAGE_TOTALS}"
    )))
    .bind("t")
    .fetch_all(&db.pool)
    .await
    .expect("plan")
    .iter()
    .map(|row| row.try_get::<String, _>(3).expect("detail"))
    .collect();
    assert_eq!(
        plan,
        ["SEARCH documents USING COVERING INDEX documents_storage (tenant_id=?)"],
        "the sum must not read documents' rows (their text)"
    );
    db.close().await;
}

#[tokio::test]
async fn an_older_release_starts_on_a_schema_a_newer_one_migrated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = sqlite_in(dir.path());
    let db = Db::connect(&config).await.expect("connect");
    db.migrate().await.expect("migrate");
    // A migration this binary does not know, as a later release leaves.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99991231000001, 'from the future', TRUE, X'00', 1)",
    )
    .execute(&db.pool)
    .await
    .expect("record a newer migration");
    db.migrate()
        .await
        .expect("the older release still starts (rollback)");
    db.close().await;
}

#[tokio::test]
async fn on_sqlite_standard_requests_use_their_own_pool() {
    lanes::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig {
        max_connections: 2,
        ..sqlite_in(dir.path())
    };
    let db = Db::connect(&config)
        .await
        .expect("connect")
        .with_standard_pool(&config)
        .await
        .expect("standard pool");
    db.migrate().await.expect("migrate");
    let standard = db.standard.clone().expect("a standard pool on SQLite");
    assert_eq!(standard.size(), 2, "opened whole, at start");
    assert_eq!(db.pool.size(), 2, "opened whole, at start");
    let stats = db.pool_stats();
    assert_eq!(stats.len(), 2);
    // Idle and in use move as connections come back; their sum is the pool.
    assert_eq!(
        (stats[1].name, stats[1].in_use + stats[1].idle, stats[1].max),
        ("standard", 2, 2)
    );

    let seat = |tier| Seat {
        tenant: TenantId::generate(),
        tier,
        route: std::sync::Arc::from("/test"),
        trace: None,
    };
    let picks_standard =
        |db: Db| async move { std::ptr::eq(db.pool(), db.standard.as_ref().expect("pool")) };
    assert!(seated(seat(Tier::Standard), picks_standard(db.clone())).await);
    assert!(!seated(seat(Tier::Premium), picks_standard(db.clone())).await);
    assert!(!picks_standard(db.clone()).await, "work outside a request");

    // Both pools see one database.
    let id = TenantId::generate();
    seated(seat(Tier::Standard), async {
        db.insert_tenant(&id, "acme", Tier::Standard).await
    })
    .await
    .expect("created through the standard pool");
    let read = db.tenant(&id).await.expect("read through the main pool");
    assert_eq!(read.map(|t| t.name), Some("acme".to_owned()));
    db.close().await;
}
