//! A real gRPC server speaking Qdrant's wire protocol (the service
//! definitions generated in `qdrant-client`), started by a test on
//! loopback. It implements the calls the analyzer makes (health check,
//! collection exists/create, field index, upsert, delete by ids or filter,
//! search) over an in-memory collection of one unnamed dense vector (exact
//! cosine scoring) or one named sparse vector (exact dot products, the
//! built-in embedder's), with Qdrant's filter semantics for keyword, integer and boolean matches, and
//! answers every other call, or any filter shape it does not know, with
//! `UNIMPLEMENTED` so that a change in what the analyzer sends fails the
//! tests instead of being silently accepted.
//!
//! It records each request, so tests can check what crossed the wire (the
//! tenant condition on every search and delete, the `is_tenant` index), and
//! it can be stopped and started again on the same port, which is how the
//! circuit breaker's recovery is shown against a real listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use analyzer_domain::embed::SparseVector;
use qdrant_client::qdrant::collections_server::{Collections, CollectionsServer};
use qdrant_client::qdrant::points_server::{Points, PointsServer};
use qdrant_client::qdrant::qdrant_server::{Qdrant, QdrantServer};
use qdrant_client::qdrant::{
    self as q, condition::ConditionOneOf, r#match::MatchValue, value::Kind,
};
use tonic::{Request, Response, Status};

/// One indexed payload field, as created by the analyzer.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldIndex {
    /// `FieldType` as its protobuf number.
    pub field_type: i32,
    /// `is_tenant` of a keyword index.
    pub is_tenant: bool,
}

/// The one vector of a collection's points.
#[derive(Debug)]
enum Space {
    /// Unnamed, dense, of this length.
    Dense(u64),
    /// Sparse, under this name.
    Sparse(String),
}

/// A stored point's vector.
#[derive(Debug)]
enum Stored {
    Dense(Vec<f32>),
    /// Ascending, unique indices with their values.
    Sparse(SparseVector),
}

#[derive(Debug)]
struct Collection {
    space: Space,
    indexes: HashMap<String, FieldIndex>,
    points: HashMap<String, (Stored, HashMap<String, q::Value>)>,
}

/// What the server holds and what it was asked, shared with the test.
#[derive(Debug, Default)]
pub struct QdrantState {
    collections: Mutex<HashMap<String, Collection>>,
    /// Filters of every search and delete-by-filter, in order.
    filters: Mutex<Vec<(String, q::Filter)>>,
    /// The `hnsw_ef` of every search, in order (`None`: not sent).
    search_efs: Mutex<Vec<Option<u64>>>,
    /// The `traceparent` metadata of every call that carried one.
    traceparents: Mutex<Vec<String>>,
    api_key: Option<String>,
}

impl QdrantState {
    fn collections(&self) -> MutexGuard<'_, HashMap<String, Collection>> {
        self.collections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The collections created so far.
    pub fn collection_names(&self) -> Vec<String> {
        self.collections().keys().cloned().collect()
    }

    /// The payload indexes of a collection.
    pub fn indexes(&self, collection: &str) -> HashMap<String, FieldIndex> {
        self.collections()
            .get(collection)
            .map(|c| c.indexes.clone())
            .unwrap_or_default()
    }

    /// How many points a collection holds.
    pub fn point_count(&self, collection: &str) -> usize {
        self.collections()
            .get(collection)
            .map_or(0, |c| c.points.len())
    }

    /// How many points of a collection hold the string `value` at the
    /// payload's top-level `field` (`tenant_id`: a tenant's points).
    pub fn points_where(&self, collection: &str, field: &str, value: &str) -> usize {
        self.collections().get(collection).map_or(0, |c| {
            c.points
                .values()
                .filter(|(_, payload)| {
                    matches!(
                        payload.get(field).and_then(|v| v.kind.as_ref()),
                        Some(Kind::StringValue(s)) if s == value
                    )
                })
                .count()
        })
    }

    /// `(call, filter)` of every search, delete-by-filter and payload change so far.
    pub fn filters(&self) -> Vec<(String, q::Filter)> {
        self.filters.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// The `hnsw_ef` each search asked for, in order.
    pub fn search_efs(&self) -> Vec<Option<u64>> {
        self.search_efs
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    fn record(&self, call: &str, filter: &q::Filter) {
        if let Ok(mut f) = self.filters.lock() {
            f.push((call.to_owned(), filter.clone()));
        }
    }

    /// The W3C `traceparent` values received so far, in order.
    pub fn traceparents(&self) -> Vec<String> {
        self.traceparents
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if let Some(Ok(traceparent)) = request.metadata().get("traceparent").map(|v| v.to_str())
            && let Ok(mut seen) = self.traceparents.lock()
        {
            seen.push(traceparent.to_owned());
        }
        let Some(expected) = &self.api_key else {
            return Ok(());
        };
        match request.metadata().get("api-key").map(|v| v.to_str()) {
            Some(Ok(key)) if key == expected => Ok(()),
            _ => Err(Status::permission_denied("Invalid api-key")),
        }
    }
}

/// A running server; stopped on drop. It runs on a runtime of its own, so
/// that stopping it closes the connections it accepted as well, as a
/// Qdrant process that goes away does (a graceful stop would let the
/// client's HTTP/2 connection live on).
pub struct FakeQdrant {
    /// `http://127.0.0.1:PORT`, for `QDRANT_URL`.
    pub url: String,
    /// The bound address, to start again on the same port.
    pub addr: SocketAddr,
    /// Stored data and recorded requests.
    pub state: Arc<QdrantState>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeQdrant {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[derive(Clone)]
struct Service(Arc<QdrantState>);

impl FakeQdrant {
    /// Start on `addr` (port 0 for any free port), requiring `api_key` on
    /// every call when given.
    pub async fn start(addr: SocketAddr, api_key: Option<&str>) -> std::io::Result<Self> {
        let state = Arc::new(QdrantState {
            api_key: api_key.map(str::to_owned),
            ..QdrantState::default()
        });
        Self::serve(addr, state).await
    }

    /// Stop listening and close every connection; the data is kept in
    /// `state`, as a restarted Qdrant keeps its storage.
    pub fn stop(mut self) -> Arc<QdrantState> {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        Arc::clone(&self.state)
    }

    /// Start again on the same address with the same data.
    pub async fn restart(addr: SocketAddr, state: Arc<QdrantState>) -> std::io::Result<Self> {
        Self::serve(addr, state).await
    }

    async fn serve(addr: SocketAddr, state: Arc<QdrantState>) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let service = Service(Arc::clone(&state));
        let router = tonic::transport::Server::builder()
            .add_service(QdrantServer::new(service.clone()))
            .add_service(CollectionsServer::new(service.clone()))
            .add_service(PointsServer::new(service));
        runtime.spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = router.serve_with_incoming(incoming).await;
        });
        Ok(Self {
            url: format!("http://{addr}"),
            addr,
            state,
            runtime: Some(runtime),
        })
    }
}

fn point_key(id: Option<&q::PointId>) -> Result<String, Status> {
    match id.and_then(|id| id.point_id_options.as_ref()) {
        Some(q::point_id::PointIdOptions::Uuid(u)) => uuid::Uuid::parse_str(u)
            .map(|u| u.to_string())
            .map_err(|_| Status::invalid_argument(format!("Unable to parse UUID: {u}"))),
        Some(q::point_id::PointIdOptions::Num(n)) => Ok(n.to_string()),
        None => Err(Status::invalid_argument("point id is missing")),
    }
}

fn point_id(key: &str) -> q::PointId {
    match key.parse::<u64>() {
        Ok(n) => n.into(),
        Err(_) => key.to_owned().into(),
    }
}

/// A point's vector, checked against the collection's, as Qdrant checks it.
#[allow(deprecated)] // `Vector::data` is how older clients send dense vectors.
fn stored(vectors: Option<&q::Vectors>, space: &Space) -> Result<Stored, Status> {
    let options = vectors.and_then(|v| v.vectors_options.as_ref());
    match (space, options) {
        (Space::Dense(size), Some(q::vectors::VectorsOptions::Vector(v))) => {
            let values = match &v.vector {
                Some(q::vector::Vector::Dense(d)) => d.data.clone(),
                None if !v.data.is_empty() => v.data.clone(),
                _ => return Err(Status::unimplemented("only dense vectors are served")),
            };
            if values.len() as u64 != *size {
                return Err(Status::invalid_argument(format!(
                    "Wrong input: Vector dimension error: expected dim: {size}, got {}",
                    values.len()
                )));
            }
            Ok(Stored::Dense(values))
        }
        (Space::Sparse(name), Some(q::vectors::VectorsOptions::Vectors(named))) => {
            let sparse = match (named.vectors.len(), named.vectors.get(name)) {
                (
                    1,
                    Some(q::Vector {
                        vector: Some(q::vector::Vector::Sparse(s)),
                        ..
                    }),
                ) => s,
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "Wrong input: expected exactly the sparse vector `{name}`"
                    )));
                }
            };
            sparse_vector(&sparse.indices, &sparse.values).map(Stored::Sparse)
        }
        _ => Err(Status::invalid_argument(
            "Wrong input: the point's vectors do not match the collection's",
        )),
    }
}

/// Indices and values sorted by index (the order the dot product needs);
/// Qdrant refuses unequal lengths and repeated indices.
fn sparse_vector(indices: &[u32], values: &[f32]) -> Result<SparseVector, Status> {
    if indices.len() != values.len() {
        return Err(Status::invalid_argument(
            "Validation error: indices and values of a sparse vector differ in length",
        ));
    }
    let mut pairs: Vec<(u32, f32)> = indices
        .iter()
        .copied()
        .zip(values.iter().copied())
        .collect();
    pairs.sort_by_key(|(i, _)| *i);
    if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(Status::invalid_argument(
            "Validation error: a sparse vector repeats an index",
        ));
    }
    let (indices, values) = pairs.into_iter().unzip();
    Ok(SparseVector { indices, values })
}

/// The payload values at a dotted path; arrays are flattened, as Qdrant
/// matches a condition against any element.
fn values_at<'a>(payload: &'a HashMap<String, q::Value>, path: &str) -> Vec<&'a q::Value> {
    let mut current: Vec<&q::Value> = Vec::new();
    let mut parts = path.split('.');
    if let Some(first) = parts.next()
        && let Some(v) = payload.get(first)
    {
        current.push(v);
    }
    for part in parts {
        current = current
            .into_iter()
            .filter_map(|v| match &v.kind {
                Some(Kind::StructValue(s)) => s.fields.get(part),
                _ => None,
            })
            .collect();
    }
    current
        .into_iter()
        .flat_map(|v| match &v.kind {
            Some(Kind::ListValue(list)) => list.values.iter().collect(),
            _ => vec![v],
        })
        .collect()
}

fn matches_value(value: &q::Value, wanted: &MatchValue) -> Result<bool, Status> {
    Ok(match (wanted, &value.kind) {
        (MatchValue::Keyword(w), Some(Kind::StringValue(s))) => w == s,
        (MatchValue::Integer(w), Some(Kind::IntegerValue(i))) => w == i,
        (MatchValue::Boolean(w), Some(Kind::BoolValue(b))) => w == b,
        (MatchValue::Keyword(_) | MatchValue::Integer(_) | MatchValue::Boolean(_), _) => false,
        (other, _) => {
            return Err(Status::unimplemented(format!(
                "match {other:?} is not served"
            )));
        }
    })
}

fn condition_holds(
    condition: &q::Condition,
    key: &str,
    payload: &HashMap<String, q::Value>,
) -> Result<bool, Status> {
    match &condition.condition_one_of {
        Some(ConditionOneOf::Field(field)) => {
            let wanted = field
                .r#match
                .as_ref()
                .and_then(|m| m.match_value.as_ref())
                .ok_or_else(|| Status::unimplemented("only match conditions are served"))?;
            for value in values_at(payload, &field.key) {
                if matches_value(value, wanted)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Some(ConditionOneOf::Filter(filter)) => filter_holds(filter, key, payload),
        Some(ConditionOneOf::HasId(has)) => {
            for id in &has.has_id {
                if point_key(Some(id))? == key {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        other => Err(Status::unimplemented(format!(
            "condition {other:?} is not served"
        ))),
    }
}

fn filter_holds(
    filter: &q::Filter,
    key: &str,
    payload: &HashMap<String, q::Value>,
) -> Result<bool, Status> {
    if filter.min_should.is_some() {
        return Err(Status::unimplemented("min_should is not served"));
    }
    for c in &filter.must {
        if !condition_holds(c, key, payload)? {
            return Ok(false);
        }
    }
    for c in &filter.must_not {
        if condition_holds(c, key, payload)? {
            return Ok(false);
        }
    }
    if filter.should.is_empty() {
        return Ok(true);
    }
    for c in &filter.should {
        if condition_holds(c, key, payload)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = norm(a) * norm(b);
    if n == 0.0 { 0.0 } else { dot / n }
}

fn not_found(collection: &str) -> Status {
    Status::not_found(format!(
        "Not found: Collection `{collection}` doesn't exist!"
    ))
}

fn completed() -> Response<q::PointsOperationResponse> {
    Response::new(q::PointsOperationResponse {
        result: Some(q::UpdateResult {
            operation_id: Some(0),
            status: q::UpdateStatus::Completed as i32,
        }),
        time: 0.0,
        usage: None,
    })
}

/// Implements a generated service trait: the calls given in full, and
/// `UNIMPLEMENTED` for every other one listed by name and types.
macro_rules! service {
    (
        impl $trait:path {
            $($item:item)*
        }
        unimplemented { $($name:ident($req:ident) -> $resp:ident;)* }
    ) => {
        #[tonic::async_trait]
        impl $trait for Service {
            $($item)*
            $(
                async fn $name(
                    &self,
                    _request: Request<q::$req>,
                ) -> Result<Response<q::$resp>, Status> {
                    Err(Status::unimplemented(concat!(stringify!($name), " is not served")))
                }
            )*
        }
    };
}

service! {
    impl Qdrant {
        async fn health_check(
            &self,
            request: Request<q::HealthCheckRequest>,
        ) -> Result<Response<q::HealthCheckReply>, Status> {
            self.0.authorize(&request)?;
            Ok(Response::new(q::HealthCheckReply {
                title: "qdrant - vector search engine (test peer)".into(),
                version: "1.15.0".into(),
                commit: None,
            }))
        }
    }
    unimplemented {}
}

service! {
    impl Collections {
        async fn collection_exists(
            &self,
            request: Request<q::CollectionExistsRequest>,
        ) -> Result<Response<q::CollectionExistsResponse>, Status> {
            self.0.authorize(&request)?;
            let exists = self
                .0
                .collections()
                .contains_key(&request.get_ref().collection_name);
            Ok(Response::new(q::CollectionExistsResponse {
                result: Some(q::CollectionExists { exists }),
                time: 0.0,
            }))
        }

        async fn create(
            &self,
            request: Request<q::CreateCollection>,
        ) -> Result<Response<q::CollectionOperationResponse>, Status> {
            self.0.authorize(&request)?;
            let create = request.into_inner();
            let dense = create.vectors_config.and_then(|c| c.config);
            let sparse = create.sparse_vectors_config.map(|c| c.map).unwrap_or_default();
            let space = match (dense, sparse.len()) {
                (Some(q::vectors_config::Config::Params(params)), 0) => {
                    if params.distance != q::Distance::Cosine as i32 || params.size == 0 {
                        return Err(Status::unimplemented("only cosine distance is served"));
                    }
                    Space::Dense(params.size)
                }
                (None, 1) => Space::Sparse(sparse.into_keys().next().unwrap_or_default()),
                _ => {
                    return Err(Status::unimplemented(
                        "only one unnamed dense or one named sparse vector is served",
                    ));
                }
            };
            let mut collections = self.0.collections();
            if collections.contains_key(&create.collection_name) {
                return Err(Status::already_exists(format!(
                    "Wrong input: Collection `{}` already exists!",
                    create.collection_name
                )));
            }
            collections.insert(
                create.collection_name,
                Collection {
                    space,
                    indexes: HashMap::new(),
                    points: HashMap::new(),
                },
            );
            Ok(Response::new(q::CollectionOperationResponse {
                result: true,
                time: 0.0,
            }))
        }
    }
    unimplemented {
        get(GetCollectionInfoRequest) -> GetCollectionInfoResponse;
        list(ListCollectionsRequest) -> ListCollectionsResponse;
        update(UpdateCollection) -> CollectionOperationResponse;
        delete(DeleteCollection) -> CollectionOperationResponse;
        update_aliases(ChangeAliases) -> CollectionOperationResponse;
        list_collection_aliases(ListCollectionAliasesRequest) -> ListAliasesResponse;
        list_aliases(ListAliasesRequest) -> ListAliasesResponse;
        collection_cluster_info(CollectionClusterInfoRequest) -> CollectionClusterInfoResponse;
        update_collection_cluster_setup(UpdateCollectionClusterSetupRequest) -> UpdateCollectionClusterSetupResponse;
        create_shard_key(CreateShardKeyRequest) -> CreateShardKeyResponse;
        delete_shard_key(DeleteShardKeyRequest) -> DeleteShardKeyResponse;
        list_shard_keys(ListShardKeysRequest) -> ListShardKeysResponse;
    }
}

service! {
    impl Points {
        async fn create_field_index(
            &self,
            request: Request<q::CreateFieldIndexCollection>,
        ) -> Result<Response<q::PointsOperationResponse>, Status> {
            self.0.authorize(&request)?;
            let create = request.into_inner();
            let is_tenant = match create.field_index_params.and_then(|p| p.index_params) {
                Some(q::payload_index_params::IndexParams::KeywordIndexParams(k)) => {
                    k.is_tenant.unwrap_or(false)
                }
                _ => false,
            };
            let mut collections = self.0.collections();
            let collection = collections
                .get_mut(&create.collection_name)
                .ok_or_else(|| not_found(&create.collection_name))?;
            collection.indexes.insert(
                create.field_name,
                FieldIndex {
                    field_type: create.field_type.unwrap_or_default(),
                    is_tenant,
                },
            );
            Ok(completed())
        }

        async fn upsert(
            &self,
            request: Request<q::UpsertPoints>,
        ) -> Result<Response<q::PointsOperationResponse>, Status> {
            self.0.authorize(&request)?;
            let upsert = request.into_inner();
            let mut collections = self.0.collections();
            let collection = collections
                .get_mut(&upsert.collection_name)
                .ok_or_else(|| not_found(&upsert.collection_name))?;
            // Validate the whole batch before applying any of it.
            let mut batch = Vec::with_capacity(upsert.points.len());
            for point in upsert.points {
                let vector = stored(point.vectors.as_ref(), &collection.space)?;
                batch.push((point_key(point.id.as_ref())?, vector, point.payload));
            }
            for (key, vector, payload) in batch {
                collection.points.insert(key, (vector, payload));
            }
            Ok(completed())
        }

        async fn delete(
            &self,
            request: Request<q::DeletePoints>,
        ) -> Result<Response<q::PointsOperationResponse>, Status> {
            self.0.authorize(&request)?;
            let delete = request.into_inner();
            let mut collections = self.0.collections();
            let collection = collections
                .get_mut(&delete.collection_name)
                .ok_or_else(|| not_found(&delete.collection_name))?;
            match delete.points.and_then(|p| p.points_selector_one_of) {
                Some(q::points_selector::PointsSelectorOneOf::Points(list)) => {
                    for id in &list.ids {
                        collection.points.remove(&point_key(Some(id))?);
                    }
                }
                Some(q::points_selector::PointsSelectorOneOf::Filter(filter)) => {
                    self.0.record("delete", &filter);
                    let mut doomed = Vec::new();
                    for (key, (_, payload)) in &collection.points {
                        if filter_holds(&filter, key, payload)? {
                            doomed.push(key.clone());
                        }
                    }
                    for key in doomed {
                        collection.points.remove(&key);
                    }
                }
                None => return Err(Status::invalid_argument("no points selected")),
            }
            Ok(completed())
        }

        async fn set_payload(
            &self,
            request: Request<q::SetPayloadPoints>,
        ) -> Result<Response<q::PointsOperationResponse>, Status> {
            self.0.authorize(&request)?;
            let set = request.into_inner();
            if set.key.is_some() {
                return Err(Status::unimplemented("payload keys are not served"));
            }
            let mut collections = self.0.collections();
            let collection = collections
                .get_mut(&set.collection_name)
                .ok_or_else(|| not_found(&set.collection_name))?;
            let Some(q::points_selector::PointsSelectorOneOf::Filter(filter)) = set
                .points_selector
                .and_then(|p| p.points_selector_one_of)
            else {
                return Err(Status::unimplemented("only filter selectors are served"));
            };
            self.0.record("set_payload", &filter);
            for (key, (_, payload)) in collection.points.iter_mut() {
                if filter_holds(&filter, key, payload)? {
                    // Top-level keys are replaced whole, as Qdrant does.
                    for (k, v) in &set.payload {
                        payload.insert(k.clone(), v.clone());
                    }
                }
            }
            Ok(completed())
        }

        async fn search(
            &self,
            request: Request<q::SearchPoints>,
        ) -> Result<Response<q::SearchResponse>, Status> {
            self.0.authorize(&request)?;
            let search = request.into_inner();
            let with_payload = match search.with_payload.and_then(|w| w.selector_options) {
                Some(q::with_payload_selector::SelectorOptions::Enable(on)) => on,
                None => false,
                Some(_) => return Err(Status::unimplemented("payload selectors are not served")),
            };
            let filter = search.filter.unwrap_or_default();
            self.0.record("search", &filter);
            if let Ok(mut efs) = self.0.search_efs.lock() {
                efs.push(search.params.and_then(|p| p.hnsw_ef));
            }
            let collections = self.0.collections();
            let collection = collections
                .get(&search.collection_name)
                .ok_or_else(|| not_found(&search.collection_name))?;
            let query = match (&collection.space, &search.vector_name, &search.sparse_indices) {
                (Space::Dense(size), None, None) => {
                    if search.vector.len() as u64 != *size {
                        return Err(Status::invalid_argument(
                            "Wrong input: Vector dimension error",
                        ));
                    }
                    Stored::Dense(search.vector.clone())
                }
                (Space::Sparse(name), Some(using), Some(indices)) if using == name => {
                    Stored::Sparse(sparse_vector(&indices.data, &search.vector)?)
                }
                _ => {
                    return Err(Status::invalid_argument(
                        "Wrong input: the query vector does not match the collection's",
                    ));
                }
            };
            let mut scored = Vec::new();
            for (key, (vector, payload)) in &collection.points {
                if filter_holds(&filter, key, payload)? {
                    let score = match (&query, vector) {
                        (Stored::Dense(q), Stored::Dense(v)) => cosine(q, v),
                        (Stored::Sparse(q), Stored::Sparse(v)) => q.dot(v),
                        _ => return Err(Status::internal("mixed vectors in one collection")),
                    };
                    if search.score_threshold.is_none_or(|least| score >= least) {
                        scored.push((score, key, payload));
                    }
                }
            }
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            let result = scored
                .into_iter()
                .take(usize::try_from(search.limit).unwrap_or(usize::MAX))
                .map(|(score, key, payload)| q::ScoredPoint {
                    id: Some(point_id(key)),
                    payload: if with_payload { payload.clone() } else { HashMap::new() },
                    score,
                    version: 0,
                    vectors: None,
                    shard_key: None,
                    order_value: None,
                })
                .collect();
            Ok(Response::new(q::SearchResponse {
                result,
                time: 0.0,
                usage: None,
            }))
        }
    }
    unimplemented {
        get(GetPoints) -> GetResponse;
        update_vectors(UpdatePointVectors) -> PointsOperationResponse;
        delete_vectors(DeletePointVectors) -> PointsOperationResponse;
        overwrite_payload(SetPayloadPoints) -> PointsOperationResponse;
        delete_payload(DeletePayloadPoints) -> PointsOperationResponse;
        clear_payload(ClearPayloadPoints) -> PointsOperationResponse;
        delete_field_index(DeleteFieldIndexCollection) -> PointsOperationResponse;
        create_vector_name(CreateVectorNameRequest) -> PointsOperationResponse;
        delete_vector_name(DeleteVectorNameRequest) -> PointsOperationResponse;
        search_batch(SearchBatchPoints) -> SearchBatchResponse;
        search_groups(SearchPointGroups) -> SearchGroupsResponse;
        scroll(ScrollPoints) -> ScrollResponse;
        recommend(RecommendPoints) -> RecommendResponse;
        recommend_batch(RecommendBatchPoints) -> RecommendBatchResponse;
        recommend_groups(RecommendPointGroups) -> RecommendGroupsResponse;
        discover(DiscoverPoints) -> DiscoverResponse;
        discover_batch(DiscoverBatchPoints) -> DiscoverBatchResponse;
        count(CountPoints) -> CountResponse;
        update_batch(UpdateBatchPoints) -> UpdateBatchResponse;
        query(QueryPoints) -> QueryResponse;
        query_batch(QueryBatchPoints) -> QueryBatchResponse;
        query_groups(QueryPointGroups) -> QueryGroupsResponse;
        facet(FacetCounts) -> FacetResponse;
        search_matrix_pairs(SearchMatrixPoints) -> SearchMatrixPairsResponse;
        search_matrix_offsets(SearchMatrixPoints) -> SearchMatrixOffsetsResponse;
    }
}
