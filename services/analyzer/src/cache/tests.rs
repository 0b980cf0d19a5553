use super::bound::*;
use super::memory::*;
use super::*;

const MIB: usize = 1024 * 1024;

#[test]
fn the_bound_follows_the_memory_limit_unless_set() {
    assert_eq!(bound_for(Some(5), Some(200_000_000)), 5);
    assert_eq!(bound_for(None, None), 32 * MIB);
    assert_eq!(bound_for(None, Some(200_000_000)), 12_500_000);
    assert_eq!(bound_for(None, Some(1024 * 1024 * 1024)), 32 * MIB);
    assert_eq!(bound_for(None, Some(8 * MIB as u64)), MIB);
}

#[test]
fn the_limit_is_read_from_the_process_own_cgroup() {
    let files = |wanted: &'static str, content: &'static str| {
        move |path: &str| (path == wanted).then(|| content.to_owned())
    };
    // cgroup v2, in a container (its own namespace: "/") and nested.
    assert_eq!(
        cgroup_memory_limit("0::/\n", files("/sys/fs/cgroup/memory.max", "209715200\n")),
        Some(209_715_200)
    );
    assert_eq!(
        cgroup_memory_limit(
            "0::/system.slice/analyzer.service\n",
            files(
                "/sys/fs/cgroup/system.slice/analyzer.service/memory.max",
                "536870912\n"
            )
        ),
        Some(536_870_912)
    );
    assert_eq!(
        cgroup_memory_limit("0::/\n", files("/sys/fs/cgroup/memory.max", "max\n")),
        None
    );
    // cgroup v1: the memory controller's line, among others.
    let v1 = "12:pids:/\n9:memory:/analyzer-load-7\n1:name=systemd:/\n";
    assert_eq!(
        cgroup_memory_limit(
            v1,
            files(
                "/sys/fs/cgroup/memory/analyzer-load-7/memory.limit_in_bytes",
                "199999488\n"
            )
        ),
        Some(199_999_488)
    );
    // v1's "no limit", and a file that cannot be read.
    assert_eq!(
        cgroup_memory_limit(
            "9:memory:/\n",
            files(
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n"
            )
        ),
        None
    );
    assert_eq!(cgroup_memory_limit("9:memory:/\n", |_| None), None);
    assert_eq!(cgroup_memory_limit("", |_| Some("1".into())), None);
}

#[tokio::test]
async fn entries_are_per_tenant() {
    let cache = MemoryCache::new(1 << 20);
    let (a, b) = (TenantId::generate(), TenantId::generate());
    cache
        .put(
            &a,
            "k",
            Bytes::from_static(b"a's"),
            Duration::from_secs(60),
            u64::MAX,
        )
        .await
        .expect("put");
    assert_eq!(
        cache.get(&a, "k").await.expect("get"),
        Some(Bytes::from_static(b"a's"))
    );
    assert_eq!(cache.get(&b, "k").await.expect("get"), None);
}

#[tokio::test]
async fn the_memory_cache_keeps_a_copy_of_the_value_not_the_callers_buffer() {
    // A `Bytes` from a `Vec` holds the vector's whole capacity; the
    // cache counts the length, so it must hold only that.
    let tenant = TenantId::generate();
    let cache = MemoryCache::new(1 << 20);
    let mut buffer = Vec::with_capacity(64 * 1024);
    buffer.extend_from_slice(b"a result");
    let value = Bytes::from(buffer);
    cache
        .put(
            &tenant,
            "k",
            value.clone(),
            Duration::from_secs(60),
            u64::MAX,
        )
        .await
        .expect("put");
    let stored = cache.get(&tenant, "k").await.expect("get").expect("hit");
    assert_eq!(stored, value);
    assert_ne!(stored.as_ptr(), value.as_ptr());
}

#[tokio::test]
async fn the_memory_cache_stays_within_its_bound_dropping_the_oldest() {
    let tenant = TenantId::generate();
    let entry = footprint(&full_key(&tenant, "k0"), 100);
    let cache = MemoryCache::new(3 * entry);
    for i in 0..5 {
        cache
            .put(
                &tenant,
                &format!("k{i}"),
                Bytes::from(vec![0u8; 100]),
                Duration::from_secs(60),
                u64::MAX,
            )
            .await
            .expect("put");
    }
    assert_eq!(cache.get(&tenant, "k0").await.expect("get"), None);
    assert_eq!(cache.get(&tenant, "k1").await.expect("get"), None);
    assert!(cache.get(&tenant, "k4").await.expect("get").is_some());
    let bytes = cache.inner.lock().expect("lock").bytes;
    assert!(bytes <= 3 * entry, "{bytes}");
}

#[tokio::test]
async fn small_entries_count_what_they_cost_not_only_their_length() {
    // A million bytes hold about 3,000 one-byte entries, not the 20,000
    // their keys and values alone would let in.
    let tenant = TenantId::generate();
    let cache = MemoryCache::new(1_000_000);
    for i in 0..20_000 {
        cache
            .put(
                &tenant,
                &format!("k{i}"),
                Bytes::from_static(b"v"),
                Duration::from_secs(60),
                u64::MAX,
            )
            .await
            .expect("put");
    }
    let (bytes, entries) = {
        let inner = cache.inner.lock().expect("lock");
        (inner.bytes, inner.entries.len())
    };
    let per_entry = footprint(&full_key(&tenant, "k19999"), 1);
    assert!(per_entry > ENTRY_OVERHEAD + 50, "{per_entry}");
    assert!(bytes <= 1_000_000, "{bytes}");
    assert!(entries <= 1_000_000 / per_entry + 1, "{entries} entries");
    assert!(
        entries >= 1_000_000 / (per_entry + 16) - 1,
        "{entries} entries"
    );
    assert_eq!(cache.used_bytes(&tenant).await.expect("used"), bytes as u64);
}

#[test]
fn allocations_are_counted_at_the_allocators_size_classes() {
    for (len, size) in [
        (0, 16),
        (1, 16),
        (17, 32),
        (64, 64),
        (65, 80),
        (128, 128),
        (129, 160),
        (2_100, 2_560),
        (4_096, 4_096),
        (4_097, 5_120),
        (100_000, 114_688),
    ] {
        assert_eq!(allocated(len), size, "{len}");
    }
}

#[test]
fn the_tenant_of_a_key_is_its_hash_tag() {
    let tenant = TenantId::generate();
    assert_eq!(
        tenant_of(&full_key(&tenant, "search:x:{y}")),
        tenant.as_str()
    );
    assert_eq!(tenant_of("no tag"), "");
}

#[tokio::test(start_paused = true)]
async fn entries_expire() {
    let cache = MemoryCache::new(1 << 20);
    let tenant = TenantId::generate();
    cache
        .put(
            &tenant,
            "k",
            Bytes::from_static(b"v"),
            Duration::from_secs(5),
            u64::MAX,
        )
        .await
        .expect("put");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(cache.get(&tenant, "k").await.expect("get"), None);
}

#[tokio::test]
async fn each_tenant_stays_within_its_budget_dropping_its_oldest() {
    let cache = MemoryCache::new(1 << 20);
    let (a, b) = (TenantId::generate(), TenantId::generate());
    let entry = footprint(&full_key(&a, "k0"), 100);
    let budget = 3 * entry as u64;
    let value = || Bytes::from(vec![0u8; 100]);
    cache
        .put(&b, "k0", value(), Duration::from_secs(60), budget)
        .await
        .expect("put");
    for i in 0..5 {
        cache
            .put(
                &a,
                &format!("k{i}"),
                value(),
                Duration::from_secs(60),
                budget,
            )
            .await
            .expect("put");
    }
    assert_eq!(cache.used_bytes(&a).await.expect("used"), budget);
    for (key, kept) in [("k0", false), ("k1", false), ("k2", true), ("k4", true)] {
        assert_eq!(
            cache.get(&a, key).await.expect("get").is_some(),
            kept,
            "{key}"
        );
    }
    // The other tenant's entry was not evicted for A's.
    assert!(cache.get(&b, "k0").await.expect("get").is_some());
    assert_eq!(cache.used_bytes(&b).await.expect("used"), entry as u64);
    // Replacing an entry counts it once; one larger than the budget is
    // not stored.
    cache
        .put(&a, "k4", value(), Duration::from_secs(60), budget)
        .await
        .expect("put");
    assert_eq!(cache.used_bytes(&a).await.expect("used"), budget);
    cache
        .put(
            &a,
            "huge",
            Bytes::from(vec![0u8; 4000]),
            Duration::from_secs(60),
            budget,
        )
        .await
        .expect("put");
    assert_eq!(cache.get(&a, "huge").await.expect("get"), None);
    assert_eq!(cache.used_bytes(&a).await.expect("used"), budget);
}

#[test]
fn keys_start_with_the_tenant_hash_tag() {
    let tenant = TenantId::generate();
    assert_eq!(full_key(&tenant, "x"), format!("{{{tenant}}}:x"));
}
