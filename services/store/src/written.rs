//! What the rest of the service learns of a write to a tenant's data
//! before the write is acknowledged.

use std::future::Future;
use std::pin::Pin;

use analyzer_domain::tenants::TenantId;

use crate::Db;

/// Told after every transaction that wrote (or tried to write) a tenant's
/// documents or data generation, before the write is acknowledged: the
/// query cache's generation in Redis is withdrawn here, so that no task
/// serves a result computed before the write (see the search module).
pub trait WriteNotice: Send + Sync + std::fmt::Debug {
    /// The tenant's data may have changed.
    fn written<'a>(&'a self, tenant: &'a TenantId)
    -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

impl Db {
    /// Tell `notice` of every write of this handle and its clones from now
    /// on. Set once; a second notice is ignored (and reported as `false`).
    pub fn set_write_notice(&self, notice: std::sync::Arc<dyn WriteNotice>) -> bool {
        self.notice.set(notice).is_ok()
    }
}
