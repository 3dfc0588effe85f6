//! `agentd plan`: the monthly cost and per-city latency of running agentd on each platform of
//! the global platforms guide (Fly.io, GKE Autopilot, EKS, Cloud Run + Cloud SQL, Render,
//! Railway, Cloudflare Workers, bare VMs), and which one to pick and why.
//!
//! The decision a newcomer must know: the code holds the model, the prices file holds every
//! number. The built-in file (`src/prices.toml`, embedded) carries the guide's figures with its
//! date, and says which knobs were calibrated so that the guide's three scale points reproduce
//! its cost table; a user's copy (`--prices FILE`) replaces it whole.
//!
//! The model, in order:
//! 1. Placement: each platform turns the requested cities into deployments at its own
//!    locations (one per city, per continent, one in all, or everywhere at the edge). A city in
//!    an area where the platform has no location makes it not available (never priced).
//! 2. Cost: fixed items per deployment or once, app instances sized by requests/day (split
//!    evenly over the deployments), database nodes plus storage per GB, per-request and
//!    compute-second prices, GPU hours. From a requests/day threshold the HA settings apply.
//! 3. Latency: a user in each city reaches the nearest deployment: round trip (from the file's
//!    table, else estimated from great-circle distance and marked) plus in-region latency.
//! 4. Decision matrix: drop platforms that cannot run the workload (long-running agents,
//!    WebSockets, residency); the best latency class of the slowest requested city; fewest
//!    limits; the cheapest, where costs within a tie margin go to the one with less effort.
//!
//! Estimates are `f64` dollars rounded to cents: this is a planner, not a ledger.

mod error;
mod geo;
mod locate;
mod model;
mod prices;
mod render;

#[cfg(test)]
mod guide_tests;

pub use error::{PlanError, PriceError, PriceErrors};
pub use model::{
    plan, plan_phases, CityLatency, CostLine, Deployment, GuideFigure, GuideLatency, GuidePhase,
    LatencyClass, MigrationNote, Needs, Plan, PlatformPlan, PricesInfo, Recommendation, Verdict,
    Workload,
};
pub use prices::{Area, Placement, Prices, Support, BUILTIN_PRICES};
pub use render::{render_phases, render_text};
