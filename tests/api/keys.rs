//! Operators' controls over tenants' credentials: API keys (a key works
//! wherever a tenant token does, is listed without its secret, and once
//! revoked or expired is refused by every task of the fleet within the
//! cache's lifetime), signing a tenant out everywhere, and the audit log
//! of it all.

use std::time::{Duration, Instant};

use analyzer_tests::{
    Options, PgDatabase, TestServer, admin_token, now, on_both_databases, split, start,
};
use serde_json::{Value, json};

/// Trust a cached key for 300 ms, so that a revocation shows quickly.
fn short_cache() -> Options {
    Options {
        env: vec![("ANALYZER_TENANT_CACHE_MS".into(), "300".into())],
        ..Options::default()
    }
}

async fn create_key(s: &TestServer, tenant: &str, body: &Value) -> (u16, Value) {
    s.post(
        &format!("/v1/admin/tenants/{tenant}/keys"),
        &admin_token(),
        body,
    )
    .await
}

fn rfc3339_in(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(now() + seconds))
        .to_string()
}

on_both_databases! {
    async fn an_api_key_speaks_for_its_tenant_until_revoked_and_its_secret_is_never_shown_again(db: Db) {
        let Some(env) = start(db, short_cache()).await else { return };
        let s = &env.server;
        let (a, _) = s.tenant("Key Owner", "premium").await;
        let (b, _) = s.tenant("Other", "standard").await;

        let (status, created) = create_key(s, &a, &json!({"name": "nightly batch"})).await;
        assert_eq!(status, 201, "{created}");
        let key = created["key"].as_str().expect("key").to_owned();
        let key_id = created["id"].as_str().expect("id").to_owned();
        assert!(key.starts_with("ak_") && key.len() > 60, "{key}");
        assert_eq!(created["prefix"], format!("ak_{key_id}"));

        // Wherever a tenant token goes: the same tenant, tier and limits.
        let (status, me) = s.get("/v1/me", &key).await;
        assert_eq!(status, 200, "{me}");
        assert_eq!((me["tenant_id"].as_str(), me["tier"].as_str()), (Some(a.as_str()), Some("premium")));
        let (status, body) = s.post("/v1/documents", &key, &json!({"documents": [{"id": "k", "text": "Ingested with an API key."}]})).await;
        assert_eq!(status, 201, "{body}");
        let r = s.request(reqwest::Method::GET, "/v1/usage", &key).send().await.expect("usage");
        assert_eq!(r.headers().get("ratelimit-limit").and_then(|v| v.to_str().ok()), Some("500"));

        // Listed without its secret, with its last use.
        let secret = key.splitn(3, '_').nth(2).expect("a secret").to_owned();
        let r = s.request(reqwest::Method::GET, &format!("/v1/admin/tenants/{a}/keys"), &admin_token()).send().await.expect("list");
        let text = r.text().await.expect("body");
        assert!(!text.contains(&secret), "a listing shows the secret: {text}");
        let list: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(list["keys"][0]["id"], key_id.as_str());
        assert_eq!(list["keys"][0]["name"], "nightly batch");
        assert!(list["keys"][0]["last_used_at"].is_string(), "{list}");
        assert!(list["keys"][0].get("key").is_none(), "{list}");

        // A wrong secret, another tenant's path, unknown keys.
        let wrong = format!("ak_{key_id}_{}", "A".repeat(43));
        let (status, problem) = s.get("/v1/me", &wrong).await;
        assert_eq!((status, problem["code"].as_str()), (401, Some("token_invalid")), "{problem}");
        let (status, _) = s.delete(&format!("/v1/admin/tenants/{b}/keys/{key_id}"), &admin_token()).await;
        assert_eq!(status, 404, "a key revoked through another tenant's path");
        let (status, _) = s.delete(&format!("/v1/admin/tenants/{a}/keys/0000000000000000"), &admin_token()).await;
        assert_eq!(status, 404);
        let (status, _) = s.delete(&format!("/v1/admin/tenants/{a}/keys/{key_id}"), &key).await;
        assert_eq!(status, 403, "a key is a tenant's credential, not an admin's");
        let (status, _) = s.get("/v1/me", &key).await;
        assert_eq!(status, 200, "the refused attempts changed nothing");

        // Revoked: refused at once here; revoking again is harmless.
        let (status, _) = s.delete(&format!("/v1/admin/tenants/{a}/keys/{key_id}"), &admin_token()).await;
        assert_eq!(status, 204);
        let (status, problem) = s.get("/v1/me", &key).await;
        assert_eq!((status, problem["code"].as_str()), (401, Some("token_invalid")), "{problem}");
        assert!(problem["detail"].as_str().expect("detail").contains("revoked"), "{problem}");
        let (status, _) = s.delete(&format!("/v1/admin/tenants/{a}/keys/{key_id}"), &admin_token()).await;
        assert_eq!(status, 204);
        let (_, list) = s.get(&format!("/v1/admin/tenants/{a}/keys"), &admin_token()).await;
        assert!(list["keys"][0]["revoked_at"].is_string(), "{list}");

        // Expiry.
        // At least 3 s left (the time is in whole seconds): usable now,
        // refused as expired once it has passed.
        let (status, created) = create_key(s, &a, &json!({"name": "short", "expires_at": rfc3339_in(4)})).await;
        assert_eq!(status, 201, "{created}");
        let short = created["key"].as_str().expect("key").to_owned();
        let (status, _) = s.get("/v1/me", &short).await;
        assert_eq!(status, 200);
        let deadline = Instant::now() + Duration::from_secs(15);
        let problem = loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let (status, problem) = s.get("/v1/me", &short).await;
            if status != 200 {
                break problem;
            }
            assert!(Instant::now() < deadline, "the key never expired");
        };
        assert_eq!(problem["code"], "token_expired", "{problem}");

        // Bad input: every field named; an unknown tenant.
        let (status, problem) = create_key(s, &a, &json!({"name": " ", "expires_at": "2001-01-01T00:00:00Z"})).await;
        assert_eq!(status, 400, "{problem}");
        let fields = analyzer_tests::problem_fields(&problem);
        assert_eq!(fields, ["name", "expires_at"], "{problem}");
        let (status, _) = create_key(s, "4eb470f8-7230-4797-8e00-c8e16e863d27", &json!({"name": "x"})).await;
        assert_eq!(status, 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_through_one_task_is_refused_by_another_within_the_cache_lifetime() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let mut servers = Vec::new();
    for dir in &dirs {
        let server = TestServer::start(dir.path(), Some(&pg.url), short_cache())
            .await
            .expect("server starts");
        servers.push(server);
    }
    let (one, two) = (&servers[0], &servers[1]);
    let (tenant, _) = one.tenant("Fleet", "premium").await;
    let (status, created) = create_key(one, &tenant, &json!({"name": "fleet"})).await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().expect("key");
    let id = created["id"].as_str().expect("id");
    let (status, _) = two.get("/v1/me", key).await;
    assert_eq!(status, 200, "the other task takes the key");

    let (status, _) = one
        .delete(
            &format!("/v1/admin/tenants/{tenant}/keys/{id}"),
            &admin_token(),
        )
        .await;
    assert_eq!(status, 204);
    let revoked = Instant::now();
    loop {
        let r = two
            .request(reqwest::Method::GET, "/v1/me", key)
            .send()
            .await
            .expect("me");
        let (status, _) = split(r).await;
        if status == 401 {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(3),
            "the other task still takes the revoked key after {:?}",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        revoked.elapsed() < Duration::from_secs(2),
        "refused after {:?}",
        revoked.elapsed()
    );
}

async fn mint(s: &TestServer, tenant: &str) -> String {
    let (status, minted) = s
        .post(
            &format!("/v1/admin/tenants/{tenant}/tokens"),
            &admin_token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{minted}");
    minted["token"].as_str().expect("token").to_owned()
}

on_both_databases! {
    async fn signing_a_tenant_out_refuses_its_earlier_tokens_and_accepts_later_ones(db: Db) {
        let Some(env) = start(db, short_cache()).await else { return };
        let s = &env.server;
        let (a, first) = s.tenant("Leaky", "standard").await;
        let (b, other) = s.tenant("Bystander", "standard").await;
        let second = mint(s, &a).await;
        let (status, created) = create_key(s, &a, &json!({"name": "job"})).await;
        assert_eq!(status, 201, "{created}");
        let key = created["key"].as_str().expect("key").to_owned();
        for token in [&first, &second, &key, &other] {
            let (status, _) = s.get("/v1/me", token).await;
            assert_eq!(status, 200);
        }

        let (status, revoked) = s
            .post(&format!("/v1/admin/tenants/{a}/tokens/revoke"), &admin_token(), &json!({}))
            .await;
        assert_eq!(status, 200, "{revoked}");
        assert!(revoked["tokens_valid_after"].is_string(), "{revoked}");
        for token in [&first, &second] {
            let (status, problem) = s.get("/v1/me", token).await;
            assert_eq!((status, problem["code"].as_str()), (401, Some("token_invalid")), "{problem}");
            assert!(problem["detail"].as_str().expect("detail").contains("revoked"), "{problem}");
        }
        // Minted right after, in the same second: accepted.
        let fresh = mint(s, &a).await;
        let (status, me) = s.get("/v1/me", &fresh).await;
        assert_eq!(status, 200, "{me}");
        // Keys are revoked one by one; another tenant is untouched.
        let (status, _) = s.get("/v1/me", &key).await;
        assert_eq!(status, 200);
        let (status, me) = s.get("/v1/me", &other).await;
        assert_eq!((status, me["tenant_id"].as_str()), (200, Some(b.as_str())));

        let (status, _) = s
            .post("/v1/admin/tenants/4eb470f8-7230-4797-8e00-c8e16e863d27/tokens/revoke", &admin_token(), &json!({}))
            .await;
        assert_eq!(status, 404);
        let (status, _) = s
            .post(&format!("/v1/admin/tenants/{a}/tokens/revoke"), &fresh, &json!({}))
            .await;
        assert_eq!(status, 403, "a tenant's token cannot sign out anyone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_carry_their_issue_time_and_an_id_of_their_own() {
    let env = start(analyzer_tests::Db::Sqlite, Options::default())
        .await
        .expect("start");
    let s = &env.server;
    let (tenant, _) = s.tenant("Claims", "standard").await;
    let (one, two) = (mint(s, &tenant).await, mint(s, &tenant).await);
    let claims = |token: &str| -> Value {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).expect("a JWT");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON claims")
    };
    let (a, b) = (claims(&one), claims(&two));
    assert!(a["iat"].as_u64().is_some_and(|iat| iat + 5 >= now()), "{a}");
    assert!(a["jti"].is_string() && b["jti"].is_string(), "{a} {b}");
    assert_ne!(a["jti"], b["jti"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_has_each_admin_action_with_its_actor_and_no_secret() {
    let env = start(analyzer_tests::Db::Sqlite, Options::default())
        .await
        .expect("start");
    let s = &env.server;
    let operator =
        analyzer_tests::sign(&json!({"scope": "admin", "sub": "ops:alice", "exp": now() + 600}));
    let (status, tenant) = s
        .post(
            "/v1/admin/tenants",
            &operator,
            &json!({"name": "Audited", "tier": "standard"}),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    let id = tenant["id"].as_str().expect("id").to_owned();
    let (_, minted) = s
        .post(
            &format!("/v1/admin/tenants/{id}/tokens"),
            &operator,
            &json!({}),
        )
        .await;
    let token = minted["token"].as_str().expect("token").to_owned();
    let (_, created) = create_key(s, &id, &json!({"name": "ci"})).await;
    let key = created["key"].as_str().expect("key").to_owned();
    let key_id = created["id"].as_str().expect("id").to_owned();
    let r = s
        .request(
            reqwest::Method::PATCH,
            &format!("/v1/admin/tenants/{id}"),
            &operator,
        )
        .json(&json!({"status": "suspended"}))
        .send()
        .await
        .expect("suspend");
    assert_eq!(r.status().as_u16(), 200);
    let (status, _) = s
        .delete(&format!("/v1/admin/tenants/{id}/keys/{key_id}"), &operator)
        .await;
    assert_eq!(status, 204);
    let (status, _) = s
        .delete(
            &format!("/v1/admin/tenants/{id}/keys/0000000000000000"),
            &operator,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .post(
            &format!("/v1/admin/tenants/{id}/tokens/revoke"),
            &operator,
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let r = s
        .request(
            reqwest::Method::GET,
            &format!("/v1/admin/tenants/{id}/export"),
            &operator,
        )
        .send()
        .await
        .expect("export");
    assert_eq!(r.status().as_u16(), 200);
    let _ = r.text().await;

    let r = s
        .request(
            reqwest::Method::GET,
            &format!("/v1/admin/audit?tenant={id}"),
            &operator,
        )
        .send()
        .await
        .expect("audit");
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.expect("body");
    let secret = key.splitn(3, '_').nth(2).expect("a secret").to_owned();
    assert!(
        !text.contains(&secret) && !text.contains(&token),
        "a secret in the audit log: {text}"
    );
    let page: Value = serde_json::from_str(&text).expect("JSON");
    let entries = page["entries"].as_array().expect("entries");
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().expect("action"),
                e["outcome"].as_str().expect("outcome"),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("tenant.create", "ok"),
            ("token.mint", "ok"),
            ("key.create", "ok"),
            ("tenant.suspend", "ok"),
            ("key.revoke", "ok"),
            ("key.revoke", "refused 404"),
            ("tokens.revoke", "ok"),
            ("tenant.export", "ok"),
        ],
        "{page}"
    );
    let created = entries.last().expect("the first entry");
    assert_eq!(created["actor"], "ops:alice");
    assert_eq!(created["tenant_id"], id.as_str());
    assert!(
        created["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{created}"
    );
    let revoked = entries
        .iter()
        .find(|e| e["action"] == "key.revoke" && e["outcome"] == "ok")
        .expect("a revocation");
    assert_eq!(revoked["target"], key_id.as_str());
    let suspended = entries
        .iter()
        .find(|e| e["action"] == "tenant.suspend")
        .expect("a suspension");
    assert_eq!(suspended["detail"], "status: suspended");

    // Paging and bad parameters.
    let (status, first) = s
        .get(&format!("/v1/admin/audit?tenant={id}&limit=3"), &operator)
        .await;
    assert_eq!(status, 200);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = s
        .get(
            &format!("/v1/admin/audit?tenant={id}&limit=3&cursor={cursor}"),
            &operator,
        )
        .await;
    assert_eq!(second["entries"][0], entries[3], "{second}");
    let (status, problem) = s
        .get(
            "/v1/admin/audit?tenant=nope&from=yesterday&limit=0",
            &operator,
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        problem["errors"].as_array().map(Vec::len),
        Some(3),
        "{problem}"
    );
    let (status, _) = s.get("/v1/admin/audit", &key).await;
    assert_eq!(status, 401, "a revoked key");
}

/// Poll `path` on `s` with `credential` until it is refused with 401 or
/// 403; how long that took. Fails past `within`.
async fn refused_within(s: &TestServer, credential: &str, within: Duration) -> Duration {
    let began = Instant::now();
    loop {
        let r = s
            .request(reqwest::Method::GET, "/v1/me", credential)
            .send()
            .await
            .expect("me");
        let (status, _) = split(r).await;
        if status == 401 || status == 403 {
            return began.elapsed();
        }
        assert!(
            began.elapsed() < within,
            "still accepted after {:?}",
            began.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_to_credentials_reach_every_task_at_once_not_when_the_cache_expires() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    // Trusted for ten minutes: only the announcement can explain a refusal.
    let long_cache = Options {
        env: vec![("ANALYZER_TENANT_CACHE_MS".into(), "600000".into())],
        ..Options::default()
    };
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let mut servers = Vec::new();
    for dir in &dirs {
        let server = TestServer::start(dir.path(), Some(&pg.url), long_cache.clone())
            .await
            .expect("server starts");
        servers.push(server);
    }
    let (one, two) = (&servers[0], &servers[1]);
    let admin = admin_token();
    let within = Duration::from_secs(5);

    let (keyed, _) = one.tenant("Keyed", "premium").await;
    let (_, created) = create_key(one, &keyed, &json!({"name": "batch"})).await;
    let (key, key_id) = (
        created["key"].as_str().expect("key").to_owned(),
        created["id"].as_str().expect("id").to_owned(),
    );
    let (signed_out, old_token) = one.tenant("Signed Out", "standard").await;
    let (suspended, suspended_token) = one.tenant("Suspended", "standard").await;
    let (deleted, deleted_token) = one.tenant("Deleted", "standard").await;
    // The listeners lose their connections; they reconnect (and forget
    // what they had cached, as changes may have gone unheard) and hear on.
    let killed = terminate_listeners(&pg.url, 2).await;
    assert!(killed >= 2, "each task listens: {killed} listeners");
    listening(&pg.url, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for credential in [&key, &old_token, &suspended_token, &deleted_token] {
        let (status, me) = two.get("/v1/me", credential).await;
        assert_eq!(status, 200, "the other task caches it first: {me}");
    }

    let (status, _) = one
        .delete(&format!("/v1/admin/tenants/{keyed}/keys/{key_id}"), &admin)
        .await;
    assert_eq!(status, 204);
    refused_within(two, &key, within).await;

    // The whole second counts: the revocation is at the next one.
    let (status, _) = one
        .post(
            &format!("/v1/admin/tenants/{signed_out}/tokens/revoke"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    refused_within(two, &old_token, within).await;

    let r = one
        .request(
            reqwest::Method::PATCH,
            &format!("/v1/admin/tenants/{suspended}"),
            &admin,
        )
        .json(&json!({"status": "suspended"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status().as_u16(), 200);
    refused_within(two, &suspended_token, within).await;

    let (status, _) = one
        .delete(&format!("/v1/admin/tenants/{deleted}"), &admin)
        .await;
    assert_eq!(status, 204);
    refused_within(two, &deleted_token, within).await;
}

/// The connections to the database at `url` that listen.
const LISTENERS: &str = "FROM pg_stat_activity WHERE datname = current_database() \
     AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'";

/// Wait until `tasks` connections to the database at `url` listen.
async fn listening(url: &str, tasks: i64) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connection");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (listening,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) {LISTENERS}")))
                .fetch_one(&mut conn)
                .await
                .expect("count");
        if listening >= tasks {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{listening} of {tasks} tasks listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Once every task listens, terminate those connections; how many there
/// were.
async fn terminate_listeners(url: &str, tasks: i64) -> i64 {
    use sqlx::Connection as _;
    listening(url, tasks).await;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connection");
    let (killed,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(pg_terminate_backend(pid)) {LISTENERS}"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("terminate");
    killed
}
