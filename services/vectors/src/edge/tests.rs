use super::*;
use qdrant_edge::{PayloadFieldSchema, PayloadSchemaType};

use super::indexes::{create_index, delete_index, on_disk};
use analyzer_domain::embed::{HashEmbedder, SparseVector};
use serde_json::json;

fn point(doc: &str, chunk: u32, vector: Vec<f32>, metadata: Value) -> ChunkPoint {
    ChunkPoint {
        document_id: doc.into(),
        revision: "r1".into(),
        collection: "default".into(),
        chunk,
        page: None,
        text: format!("{doc} chunk {chunk}"),
        metadata: metadata.as_object().cloned().unwrap_or_default(),
        vector: Embedding::Dense(vector),
    }
}

/// A chunk of `text` with its built-in sparse vector `vector`.
fn sparse_point(doc: &str, text: &str, vector: SparseVector, metadata: Value) -> ChunkPoint {
    ChunkPoint {
        text: text.to_owned(),
        vector: Embedding::Sparse(vector),
        ..point(doc, 0, vec![], metadata)
    }
}

/// Wait until the maintenance thread has flushed and optimized.
async fn settle(store: &EdgeStore) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while store.maintenance_pending() != Some(false) {
        assert!(
            std::time::Instant::now() < deadline,
            "maintenance never settled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn hits(store: &EdgeStore, t: &TenantId) -> usize {
    let query = query(vec![0.0, 1.0], vec![]);
    store.search(t, query).await.expect("search").len()
}

fn query(vector: Vec<f32>, filter: Vec<(String, FilterValue)>) -> SearchQuery {
    SearchQuery {
        collection: "default".into(),
        vector: Embedding::Dense(vector),
        top_k: 10,
        filter,
    }
}

fn sparse_query(vector: SparseVector, filter: Vec<(String, FilterValue)>) -> SearchQuery {
    SearchQuery {
        collection: "default".into(),
        vector: Embedding::Sparse(vector),
        top_k: 10,
        filter,
    }
}

#[tokio::test]
async fn search_and_delete_never_cross_tenants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EdgeStore::open(dir.path(), "test-model", VectorSpace::Dense(3)).expect("open");
    let (a, b) = (TenantId::generate(), TenantId::generate());
    store
        .upsert(
            &a,
            vec![point("same-id", 0, vec![1.0, 0.0, 0.0], json!({}))],
        )
        .await
        .expect("upsert a");
    store
        .upsert(
            &b,
            vec![point("same-id", 0, vec![1.0, 0.0, 0.0], json!({}))],
        )
        .await
        .expect("upsert b");

    let hits = store
        .search(&a, query(vec![1.0, 0.0, 0.0], vec![]))
        .await
        .expect("search");
    assert_eq!(hits.len(), 1, "tenant a sees only its own point");

    store
        .delete_document(&b, "same-id")
        .await
        .expect("delete b");
    assert_eq!(
        store
            .search(&a, query(vec![1.0, 0.0, 0.0], vec![]))
            .await
            .expect("a")
            .len(),
        1
    );
    assert!(
        store
            .search(&b, query(vec![1.0, 0.0, 0.0], vec![]))
            .await
            .expect("b")
            .is_empty()
    );
}

#[tokio::test]
async fn metadata_filters_and_chunk_deletes_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EdgeStore::open(dir.path(), "test-model", VectorSpace::Dense(2)).expect("open");
    let t = TenantId::generate();
    store
        .upsert(
            &t,
            vec![
                point("d1", 0, vec![1.0, 0.0], json!({"lang": "en", "year": 2024})),
                point("d1", 1, vec![0.9, 0.1], json!({"lang": "en", "year": 2024})),
                point("d2", 0, vec![1.0, 0.0], json!({"lang": "de", "year": 2023})),
            ],
        )
        .await
        .expect("upsert");
    let en = store
        .search(
            &t,
            query(
                vec![1.0, 0.0],
                vec![("lang".into(), FilterValue::String("en".into()))],
            ),
        )
        .await
        .expect("search");
    assert_eq!(en.len(), 2);
    assert!(en.iter().all(|h| h.document_id == "d1"));
    let y = store
        .search(
            &t,
            query(
                vec![1.0, 0.0],
                vec![("year".into(), FilterValue::Integer(2023))],
            ),
        )
        .await
        .expect("search");
    assert_eq!(y.len(), 1);

    store
        .delete_revision(&t, "d1", "r1", 2)
        .await
        .expect("delete revision");
    let all = store
        .search(&t, query(vec![1.0, 0.0], vec![]))
        .await
        .expect("search");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].document_id, "d2");
}

#[tokio::test]
async fn a_clean_stop_is_marked_and_anything_else_asks_for_reconciliation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TenantId::generate();
    {
        let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("open");
        assert_eq!(
            store.reconcile_reason(),
            Some("a new shard"),
            "a new shard is checked against the database"
        );
        store
            .upsert(&t, vec![point("d1", 0, vec![0.0, 1.0], json!({}))])
            .await
            .expect("upsert");
        store.flush().await.expect("clean stop");
        assert!(
            store
                .upsert(&t, vec![point("d2", 0, vec![0.0, 1.0], json!({}))])
                .await
                .is_err(),
            "a closed store takes no writes"
        );
    }
    {
        let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
        assert_eq!(store.reconcile_reason(), None);
        assert_eq!(hits(&store, &t).await, 1);
        store
            .upsert(&t, vec![point("d2", 0, vec![0.0, 1.0], json!({}))])
            .await
            .expect("upsert");
        // Dropped without a clean stop.
    }
    let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
    assert_eq!(
        store.reconcile_reason(),
        Some("the shard was not stopped cleanly")
    );
    assert_eq!(hits(&store, &t).await, 2, "the shard flushes as it drops");
    store
        .delete_points(vec![point_id(&t, "d2", "r1", 0)])
        .await
        .expect("delete");
    assert_eq!(hits(&store, &t).await, 1);
    assert_eq!(store.point_ids().await.expect("ids").len(), 1);
}

/// The shard's indexed payload fields that pass `filter`, sorted.
fn indexed_fields(
    store: &EdgeStore,
    filter: impl Fn(&qdrant_edge::PayloadIndexInfo) -> bool,
) -> Vec<String> {
    let shard = store.shared.shard.read().expect("lock");
    let mut fields: Vec<String> = shard
        .info()
        .payload_schema
        .iter()
        .filter(|(_, info)| filter(info))
        .map(|(field, _)| field.to_string())
        .collect();
    fields.sort();
    fields
}

/// Replace `field`'s index with a plain keyword index, loaded into
/// memory: the layout of older shards.
fn in_memory_keyword_index(shard: &EdgeShard, field: &str) {
    delete_index(shard, field).expect("drop index");
    create_index(
        shard,
        field,
        PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword),
    )
    .expect("keyword index");
}

#[tokio::test]
async fn the_indexes_of_an_older_shard_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (TenantId::generate(), TenantId::generate());
    let tenant_index = |store: &EdgeStore| {
        let shard = store.shared.shard.read().expect("lock");
        shard
            .info()
            .payload_schema
            .get(&path(keys::TENANT).expect("path"))
            .map(|i| i.data_type)
    };
    {
        let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("open");
        assert_eq!(tenant_index(&store), Some(PayloadSchemaType::Uuid));
        for t in [&a, &b] {
            store
                .upsert(t, vec![point("d", 0, vec![0.0, 1.0], json!({}))])
                .await
                .expect("upsert");
        }
        // The layout of shards written before: a keyword index, and
        // an index of the chunk number.
        {
            let shard = store.shared.shard.read().expect("lock");
            in_memory_keyword_index(&shard, keys::TENANT);
            create_index(
                &shard,
                keys::CHUNK,
                PayloadFieldSchema::FieldType(PayloadSchemaType::Integer),
            )
            .expect("chunk index");
        }
        assert_eq!(tenant_index(&store), Some(PayloadSchemaType::Keyword));
        store.flush().await.expect("clean stop");
    }
    let indexed = |store: &EdgeStore| indexed_fields(store, |_| true);
    let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
    assert_eq!(tenant_index(&store), Some(PayloadSchemaType::Uuid));
    let today = [keys::COLLECTION, keys::DOCUMENT, keys::TENANT].map(str::to_owned);
    assert_eq!(indexed(&store), today);
    drop(store);
    // A shard with today's tenant index, and the chunk number's still.
    {
        let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
        create_index(
            &store.shared.shard.read().expect("lock"),
            keys::CHUNK,
            PayloadFieldSchema::FieldType(PayloadSchemaType::Integer),
        )
        .expect("chunk index");
        store.flush().await.expect("clean stop");
    }
    let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
    assert_eq!(indexed(&store), today);
    assert_eq!(
        hits(&store, &a).await,
        1,
        "each tenant sees its own point only"
    );
    assert_eq!(hits(&store, &b).await, 1);
    let on_disk_fields = |store: &EdgeStore| indexed_fields(store, on_disk);
    assert_eq!(on_disk_fields(&store), today);
    // A shard whose indexes were loaded into memory (today's types,
    // before they stayed on disk) gets them on disk.
    in_memory_keyword_index(&store.shared.shard.read().expect("lock"), keys::DOCUMENT);
    assert_eq!(
        on_disk_fields(&store),
        [keys::COLLECTION, keys::TENANT].map(str::to_owned)
    );
    store.flush().await.expect("clean stop");
    drop(store);
    let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
    assert_eq!(indexed(&store), today);
    assert_eq!(on_disk_fields(&store), today);
    assert_eq!(hits(&store, &a).await, 1);
    assert_eq!(hits(&store, &b).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_segments_are_indexed_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Index anything above 1 KiB of vectors.
    let store = EdgeStore::open_with(
        dir.path(),
        "m",
        VectorSpace::Dense(16),
        Tuning {
            indexing_threshold_kb: Some(1),
            ..Tuning::default()
        },
    )
    .expect("open");
    let t = TenantId::generate();
    // Pseudo-random directions (xorshift), distinct for every point.
    let vector = |i: u32| -> Vec<f32> {
        let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..16)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    };
    for batch in 0..4u32 {
        let points = (batch * 250..(batch + 1) * 250)
            .map(|i| point(&format!("d{i}"), 0, vector(i), json!({})))
            .collect();
        store.upsert(&t, points).await.expect("upsert");
    }
    settle(&store).await;
    assert!(
        store.indexed_vectors().await.expect("info") > 0,
        "no segment was indexed"
    );
    let found = store
        .search(&t, query(vector(420), vec![]))
        .await
        .expect("search");
    assert_eq!(found[0].document_id, "d420");
    assert_eq!(store.point_ids().await.expect("ids").len(), 1000);
}

/// Text of `n` pseudo-random words out of a vocabulary of 400.
fn words(seed: u64, n: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("w{}", x % 400)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_take_turns_and_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        EdgeStore::open(dir.path(), HashEmbedder::MODEL, VectorSpace::Sparse).expect("open"),
    );
    let t = TenantId::generate();
    // Far more writers than the one turn: upserts, and deletes of half
    // of what they wrote, all at once.
    let writes = (0..300).map(|i| {
        let (store, t) = (Arc::clone(&store), t.clone());
        tokio::spawn(async move {
            let (doc, text) = (format!("d{i}"), words(i, 12));
            let p = sparse_point(&doc, &text, HashEmbedder.embed_one(&text), json!({}));
            store.upsert(&t, vec![p]).await?;
            if i % 2 == 1 {
                store.delete_revision(&t, &doc, "r1", 1).await?;
            }
            Ok::<_, VectorError>(())
        })
    });
    for write in futures::future::join_all(writes).await {
        write.expect("task").expect("every write lands");
    }
    let ids = store.point_ids().await.expect("ids");
    assert_eq!(ids.len(), 150);
    for i in (0..300).step_by(2) {
        assert!(
            ids.contains(&point_id(&t, &format!("d{i}"), "r1", 0)),
            "d{i}"
        );
    }
}

/// A store of the built-in embedder's sparse vectors that indexes
/// anything above 1 KiB: the optimizers build immutable inverted
/// indexes, beside the appendable segment's own.
fn open_indexing_sparse(dir: &Path) -> EdgeStore {
    EdgeStore::open_with(
        dir,
        HashEmbedder::MODEL,
        VectorSpace::Sparse,
        Tuning {
            indexing_threshold_kb: Some(1),
            ..Tuning::default()
        },
    )
    .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_vectors_are_searched_exactly_and_only_in_the_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (TenantId::generate(), TenantId::generate());
    let embedder = HashEmbedder;
    // Tenant a is past the size (5,000 points) below which a filtered
    // search scores the tenant's points one by one instead of reading
    // posting lists; its filtered search and tenant b are below it.
    let texts: Vec<String> = (0..6200).map(|i| words(i, 12)).collect();
    let vectors: Vec<_> = texts.iter().map(|t| embedder.embed_one(t)).collect();
    let chunk = |i: usize| {
        sparse_point(
            &format!("d{i}"),
            &texts[i],
            vectors[i].clone(),
            json!({"half": i % 2}),
        )
    };
    {
        let store = open_indexing_sparse(dir.path());
        for batch in 0..6 {
            let points = (batch * 1000..(batch + 1) * 1000).map(chunk).collect();
            store.upsert(&a, points).await.expect("upsert a");
        }
        let points = (6000..6200).map(chunk).collect();
        store.upsert(&b, points).await.expect("upsert b");
        settle(&store).await;
        store.flush().await.expect("clean stop");
    }
    let store =
        EdgeStore::open(dir.path(), HashEmbedder::MODEL, VectorSpace::Sparse).expect("reopen");
    assert_eq!(store.point_ids().await.expect("ids").len(), 6200);
    for q in 0..20u64 {
        let text = words(10_000 + q, 3);
        let vector = embedder.embed_one(&text);
        for (tenant, range, filter) in [
            (&a, 0..6000, vec![]),
            (&b, 6000..6200, vec![]),
            (
                &a,
                0..6000,
                vec![("half".to_owned(), FilterValue::Integer(1))],
            ),
        ] {
            let mut truth: Vec<f32> = range
                .filter(|i| filter.is_empty() || i % 2 == 1)
                .map(|i| vectors[i].dot(&vector))
                .filter(|score| *score > 0.0)
                .collect();
            truth.sort_by(|x, y| y.total_cmp(x));
            truth.truncate(10);
            let hits = store
                .search(tenant, sparse_query(vector.clone(), filter.clone()))
                .await
                .expect("search");
            let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
            assert_eq!(
                scores.len(),
                truth.len(),
                "query {text:?}: {scores:?} vs {truth:?}"
            );
            for (got, want) in scores.iter().zip(&truth) {
                assert!(
                    (got - want).abs() < 1e-4,
                    "query {text:?}: {scores:?} vs {truth:?}"
                );
            }
            for hit in &hits {
                let i: usize = hit.document_id[1..].parse().expect("our id");
                assert_eq!(hit.text, texts[i]);
                if tenant == &b {
                    assert!(i >= 6000, "b sees only its own points");
                } else {
                    assert!(i < 6000, "a sees only its own points");
                }
                if !filter.is_empty() {
                    assert_eq!(i % 2, 1, "the filter holds");
                }
            }
        }
    }
}

/// The `VmFlags` of every mapping of a segment's inverted index under
/// `dir`, from `/proc/self/smaps` (where `VmFlags` ends each mapping).
#[cfg(target_os = "linux")]
fn inverted_index_flags(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).expect("canonical dir");
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let mut ours = false;
    let mut flags = Vec::new();
    for line in smaps.lines() {
        if let Some(rest) = line.strip_prefix("VmFlags:") {
            if ours {
                flags.push(rest.trim().to_owned());
            }
            ours = false;
        } else if crate::readahead::inverted_index_mapping(line, &dir).is_some() {
            ours = true;
        }
    }
    flags
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inverted_indexes_are_read_without_read_ahead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TenantId::generate();
    let embedder = HashEmbedder;
    let random_reads = |flags: &[String]| {
        !flags.is_empty()
            && flags
                .iter()
                .all(|f| f.split_whitespace().any(|flag| flag == "rr"))
    };
    {
        let store = open_indexing_sparse(dir.path());
        for batch in 0..3u64 {
            let points = (batch * 500..(batch + 1) * 500)
                .map(|i| {
                    let text = words(i, 12);
                    let vector = embedder.embed_one(&text);
                    sparse_point(&format!("d{i}"), &text, vector, json!({}))
                })
                .collect();
            store.upsert(&t, points).await.expect("upsert");
        }
        settle(&store).await;
        // The indexes the optimizers built and mapped.
        let flags = inverted_index_flags(dir.path());
        assert!(random_reads(&flags), "after optimizing: {flags:?}");
        store.flush().await.expect("clean stop");
    }
    // And those a reopened shard maps as it loads its segments.
    let store =
        EdgeStore::open(dir.path(), HashEmbedder::MODEL, VectorSpace::Sparse).expect("reopen");
    let flags = inverted_index_flags(dir.path());
    assert!(random_reads(&flags), "after reopening: {flags:?}");
    let hits = store
        .search(&t, sparse_query(embedder.embed_one(&words(7, 12)), vec![]))
        .await
        .expect("search");
    assert_eq!(hits[0].document_id, "d7");
}

#[tokio::test]
async fn a_text_of_stop_words_alone_is_stored_and_matches_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        EdgeStore::open(dir.path(), HashEmbedder::MODEL, VectorSpace::Sparse).expect("open");
    let t = TenantId::generate();
    let chunk =
        |doc: &str, text: &str| sparse_point(doc, text, HashEmbedder.embed_one(text), json!({}));
    let (empty, words) = (
        chunk("d1", "The. Of it!"),
        chunk("d2", "Lava builds islands."),
    );
    store.upsert(&t, vec![empty, words]).await.expect("upsert");
    assert_eq!(store.point_ids().await.expect("ids").len(), 2);
    let search = |text: &str| sparse_query(HashEmbedder.embed_one(text), vec![]);
    assert!(
        store
            .search(&t, search("the of"))
            .await
            .expect("search")
            .is_empty()
    );
    let found = store.search(&t, search("islands")).await.expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].document_id, "d2");
}

#[tokio::test]
async fn reopening_prunes_the_write_ahead_log_and_later_writes_still_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TenantId::generate();
    let tuning = Tuning {
        wal_segment_bytes: 64 * 1024,
        ..Tuning::default()
    };
    let wal = dir.path().join("m").join(WAL_DIR);
    let closed_segments = || {
        std::fs::read_dir(&wal)
            .expect("wal dir")
            .filter(|e| {
                e.as_ref()
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .starts_with("closed-")
            })
            .count()
    };
    let rewrite = |text: &str| -> Vec<ChunkPoint> {
        (0..20)
            .map(|i| ChunkPoint {
                text: text.to_owned(),
                ..point(&format!("d{i}"), 0, vec![0.0, 1.0], json!({}))
            })
            .collect()
    };
    {
        let store =
            EdgeStore::open_with(dir.path(), "m", VectorSpace::Dense(2), tuning).expect("open");
        for round in 0..60 {
            let text = format!("round {round} {}", "words ".repeat(40));
            store.upsert(&t, rewrite(&text)).await.expect("upsert");
        }
        store.flush().await.expect("clean stop");
    }
    assert!(closed_segments() >= 3, "{} closed", closed_segments());
    for reopen in 0..2 {
        let store =
            EdgeStore::open_with(dir.path(), "m", VectorSpace::Dense(2), tuning).expect("reopen");
        assert_eq!(closed_segments(), 1);
        // The points carry the numbers of the writes before: a rewrite
        // numbered from zero again would be ignored.
        let text = format!("reopened {reopen}");
        store.upsert(&t, rewrite(&text)).await.expect("upsert");
        let hits = store
            .search(&t, query(vec![0.0, 1.0], vec![]))
            .await
            .expect("search");
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| h.text == text), "{hits:?}");
        store.flush().await.expect("clean stop");
    }
}

#[tokio::test]
async fn data_survives_reopening_the_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TenantId::generate();
    {
        let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("open");
        store
            .upsert(&t, vec![point("d1", 0, vec![0.0, 1.0], json!({}))])
            .await
            .expect("upsert");
        store.flush().await.expect("clean stop");
    }
    let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
    let hits = store
        .search(&t, query(vec![0.0, 1.0], vec![]))
        .await
        .expect("search");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].document_id, "d1");
}

#[tokio::test]
async fn a_snapshot_taken_while_writes_go_on_holds_every_write_acknowledged_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = tempfile::tempdir().expect("tempdir");
    let t = TenantId::generate();
    let store = Arc::new(EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("open"));
    for i in 0..50 {
        store
            .upsert(
                &t,
                vec![point(&format!("before-{i}"), 0, vec![0.0, 1.0], json!({}))],
            )
            .await
            .expect("upsert");
    }
    let writer = {
        let (store, t) = (Arc::clone(&store), t.clone());
        tokio::spawn(async move {
            for i in 0..200 {
                store
                    .upsert(
                        &t,
                        vec![point(&format!("during-{i}"), 0, vec![1.0, 0.0], json!({}))],
                    )
                    .await
                    .expect("upsert during the snapshot");
            }
        })
    };
    store
        .snapshot_to(&copy.path().join("vectors"))
        .await
        .expect("snapshot");
    assert_eq!(
        hits(&store, &t).await,
        10,
        "the store serves after the copy"
    );
    writer.await.expect("writer");

    let copied = EdgeStore::open(&copy.path().join("vectors"), "m", VectorSpace::Dense(2))
        .expect("the copy opens as a shard");
    assert_eq!(
        copied.reconcile_reason(),
        Some("the shard was not stopped cleanly"),
        "a restored copy is always checked against the database"
    );
    let ids = copied.point_ids().await.expect("ids");
    for i in 0..50 {
        assert!(
            ids.contains(&point_id(&t, &format!("before-{i}"), "r1", 0)),
            "before-{i} was written before the snapshot began"
        );
    }
    assert!(ids.len() <= 250);
    assert!(
        !copy.path().join("vectors/m").join(CLEAN_STOP).exists(),
        "no clean-stop marker is copied"
    );
    drop(copied);
    store.flush().await.expect("clean stop");
    assert!(
        store.snapshot_to(&copy.path().join("again")).await.is_err(),
        "a closed store takes no snapshot"
    );
}
