//! Domain types shared by every agentd crate: identifiers, the API error model and the
//! storage traits.
//!
//! The one decision to know: this crate has no I/O and no heavy dependencies. Backends
//! (`agentd-store`), providers and the gateway depend on it, never the other way round, so a
//! new backend or role is a new crate implementing these traits.

pub mod counters;
pub mod error;
pub mod ids;
pub mod keys;
pub mod money;
pub mod queue;
pub mod runs;
pub mod spend;
pub mod tenants;
pub mod usage;

pub use counters::{
    Admission, Admit, BudgetState, Charge, CounterError, Counters, Hold, RateCharge, ResponseCache,
};
pub use error::{echo, ApiError, ErrorKind, Fault};
pub use ids::{KeyId, TenantId, UserId};
pub use keys::{ApiKey, KeyStore, NewKey, StoreError};
pub use money::{Micros, Price};
pub use queue::{DeadLetter, Delivery, QueueError, QueueStats, Ticket, WorkQueue};
pub use runs::{
    CancelAction, CreateRun, Cron, CronQuery, MultitaskStrategy, NewEvent, Priority, Run, RunEvent,
    RunStatus, RunStore, Step, Swept, Thread, ThreadQuery, ThreadStatus,
};
pub use spend::{SpendGroup, SpendQuery, SpendRecord, SpendScope, SpendStore, SpendTotal};
pub use tenants::{Residency, TenantPin, TenantStore};
pub use usage::Usage;
