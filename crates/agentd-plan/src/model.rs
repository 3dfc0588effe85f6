//! The model: requested cities → deployments (by the platform's placement and locations) →
//! monthly cost (the platform's components) and latency per city (nearest deployment), then the
//! decision matrix.

use serde::Serialize;

use crate::error::PlanError;
use crate::geo::CityId;
use crate::prices::{DbNodes, Per, Placement, Platform, Prices, Support};

/// What to plan for.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    /// Requests a day (agent runs and gateway calls), split evenly over a platform's deployments.
    pub requests_per_day: u64,
    /// Region (city) codes, e.g. `cdg`, `nrt`, `sjc`, `ewr`.
    pub regions: Vec<String>,
    /// Database size in GB.
    pub db_gb: f64,
    /// GPU hours a month, priced at the prices file's `[gpu]` rate.
    pub gpu_hours_per_month: f64,
    /// What the workload needs from a platform.
    pub needs: Needs,
}

impl Workload {
    /// A full agentd workload (long-running agents, WebSockets, no residency rule), no GPU.
    pub fn new(requests_per_day: u64, regions: &[&str], db_gb: f64) -> Self {
        Self {
            requests_per_day,
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            db_gb,
            gpu_hours_per_month: 0.0,
            needs: Needs::default(),
        }
    }
}

/// Requirements a platform must meet to be recommended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Needs {
    /// Agent runs that outlive a request timeout (minutes of tool calls and model calls).
    pub long_running: bool,
    /// WebSocket connections (run event streams).
    pub websockets: bool,
    /// Each area's data stays in that area (the guide's Strategy 3).
    pub residency: bool,
}

impl Default for Needs {
    fn default() -> Self {
        Self {
            long_running: true,
            websockets: true,
            residency: false,
        }
    }
}

/// The result of [`plan`]; serializes to the `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub prices: PricesInfo,
    pub workload: Workload,
    /// Whether the HA settings apply (requests/day at or above the prices file's threshold).
    pub high_availability: bool,
    /// Every platform: the recommended one first, then the other eligible ones by latency and
    /// cost, then the unsuitable ones, then those that cannot serve the regions.
    pub platforms: Vec<PlatformPlan>,
    pub recommendation: Option<Recommendation>,
    pub migration: Option<MigrationNote>,
    /// The guide's scale point (cost table column) this workload is, if any.
    pub guide_scale_point: Option<String>,
    /// The guide's phase with exactly these regions, if any.
    pub guide_phase: Option<GuidePhase>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PricesInfo {
    pub origin: String,
    pub guide: String,
    pub date: String,
    pub days_per_month: f64,
    pub ha_from_requests_per_day: u64,
    pub in_region_ms: [f64; 2],
}

#[derive(Debug, Clone, Serialize)]
pub struct PlatformPlan {
    pub id: String,
    pub name: String,
    pub placement: Placement,
    pub verdict: Verdict,
    /// Monthly total in dollars; `None` when the platform cannot serve the regions.
    pub monthly_usd: Option<f64>,
    /// The total without GPU hours, divided by the number of deployments.
    pub per_deployment_usd: Option<f64>,
    pub deployments: Vec<Deployment>,
    pub cost: Vec<CostLine>,
    /// Requested cities first, then the reference cities.
    pub latency: Vec<CityLatency>,
    /// The slowest requested city.
    pub worst_latency: Option<CityLatency>,
    /// 1 (least) to 5 (most) operational effort.
    pub effort: u8,
    /// The guide's table figure, when the workload is one of its scale points.
    pub guide: Option<GuideFigure>,
    /// Needs the platform only partly meets; each ranks it after those that meet them fully.
    pub caveats: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    Recommended,
    Eligible,
    /// Priced, but cannot run this workload.
    Unsuitable {
        reasons: Vec<String>,
    },
    /// Cannot serve the requested regions; never priced.
    NotAvailable {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub location: String,
    pub city: String,
    /// Requested cities this deployment was placed for.
    pub serves: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostLine {
    pub item: String,
    pub quantity: f64,
    pub unit_usd: f64,
    pub monthly_usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CityLatency {
    pub code: String,
    pub city: String,
    pub requested: bool,
    pub served_from: String,
    pub rtt_ms: f64,
    /// The round trip is estimated from distance, not a figure of the prices file.
    pub estimated: bool,
    pub low_ms: f64,
    pub high_ms: f64,
    pub class: LatencyClass,
}

/// A figure of the guide's cost table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GuideFigure {
    /// "$500": an estimate, rounded the guide's way.
    About { monthly_usd: f64 },
    /// "$5,000+".
    AtLeast { monthly_usd: f64 },
    /// "N/A".
    NotAvailable,
}

/// Latency verdicts, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyClass {
    /// Served by a deployment in the city itself.
    InCity,
    /// Within `good_up_to_ms`.
    Good,
    /// Within `acceptable_up_to_ms`.
    Acceptable,
    TooSlow,
}

impl LatencyClass {
    pub(crate) fn label(self) -> &'static str {
        match self {
            LatencyClass::InCity => "in city",
            LatencyClass::Good => "good",
            LatencyClass::Acceptable => "acceptable",
            LatencyClass::TooSlow => "too slow",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub platform: String,
    pub name: String,
    pub monthly_usd: f64,
    /// One or two sentences: the decision matrix applied.
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationNote {
    pub from: String,
    pub from_monthly_usd: f64,
    pub threshold_usd: f64,
    pub to: String,
    pub to_monthly_usd: Option<f64>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GuidePhase {
    pub name: String,
    pub platform: String,
    pub monthly_usd: f64,
    pub latency: Vec<GuideLatency>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GuideLatency {
    pub code: String,
    pub low_ms: f64,
    pub high_ms: f64,
}

/// Estimates every platform for `workload` and recommends one.
pub fn plan(prices: &Prices, workload: &Workload) -> Result<Plan, PlanError> {
    for (field, value) in [
        ("db_gb", workload.db_gb),
        ("gpu_hours_per_month", workload.gpu_hours_per_month),
    ] {
        if !value.is_finite() || value < 0.0 {
            return Err(PlanError::InvalidWorkload { field, value });
        }
    }
    let requested = resolve_regions(prices, &workload.regions)?;
    let ha = workload.requests_per_day >= prices.ha_from_requests_per_day;

    // Requested cities, then the reference cities not requested.
    let mut shown = requested.clone();
    for &c in &prices.latency.reference {
        if !shown.contains(&c) {
            shown.push(c);
        }
    }

    let mut platforms: Vec<PlatformPlan> = prices
        .platforms
        .iter()
        .map(|p| estimate(prices, p, workload, &requested, &shown, ha))
        .collect();
    let guide_scale_point = prices
        .scale_points
        .iter()
        .find(|s| {
            s.requests_per_day == workload.requests_per_day
                && s.db_gb == workload.db_gb
                && workload.gpu_hours_per_month == 0.0
                && same_set(&s.regions, &requested)
        })
        .map(|s| {
            for &(i, figure) in &s.figures {
                let id = &prices.platforms[i].id;
                if let Some(p) = platforms.iter_mut().find(|p| &p.id == id) {
                    p.guide = Some(figure);
                }
            }
            s.name.clone()
        });
    let recommendation = decide(prices, &mut platforms);
    let migration = migration_note(prices, &platforms);
    let guide_phase = guide_phase(prices, &requested);

    let mut notes = vec![format!(
        "Requests are split evenly over a platform's deployments; a month is {} days.",
        prices.days_per_month
    )];
    if ha {
        notes.push(format!(
            "High availability from {} requests/day: two app instances per deployment, a database standby, replicated caches.",
            thousands(prices.ha_from_requests_per_day as f64)
        ));
    }
    if platforms
        .iter()
        .flat_map(|p| &p.latency)
        .any(|l| l.estimated)
    {
        notes.push(
            "~ marks a round trip estimated from great-circle distance (no figure for that pair in the prices file)."
                .to_owned(),
        );
    }

    Ok(Plan {
        prices: PricesInfo {
            origin: prices.origin.clone(),
            guide: prices.guide.clone(),
            date: prices.date.clone(),
            days_per_month: prices.days_per_month,
            ha_from_requests_per_day: prices.ha_from_requests_per_day,
            in_region_ms: [prices.latency.in_region_ms.0, prices.latency.in_region_ms.1],
        },
        workload: Workload {
            regions: requested
                .iter()
                .map(|&c| prices.cities.get(c).code.clone())
                .collect(),
            ..workload.clone()
        },
        high_availability: ha,
        platforms,
        recommendation,
        migration,
        guide_scale_point,
        guide_phase,
        notes,
    })
}

/// Plans each of the guide's phases (its regions) with the volumes of `workload`.
pub fn plan_phases(prices: &Prices, workload: &Workload) -> Result<Vec<Plan>, PlanError> {
    prices
        .phases()
        .into_iter()
        .map(|(_, regions)| {
            plan(
                prices,
                &Workload {
                    regions,
                    ..workload.clone()
                },
            )
        })
        .collect()
}

fn resolve_regions(prices: &Prices, regions: &[String]) -> Result<Vec<CityId>, PlanError> {
    let mut out = Vec::new();
    for code in regions {
        let code = code.trim().to_ascii_lowercase();
        if code.is_empty() {
            continue;
        }
        let id = prices
            .cities
            .find(&code)
            .ok_or_else(|| PlanError::UnknownRegion {
                code: code.clone(),
                valid: prices.city_codes(),
            })?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    if out.is_empty() {
        return Err(PlanError::NoRegions);
    }
    Ok(out)
}

fn round_cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `1234567.8` → `1,234,568`.
pub(crate) fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

fn estimate(
    prices: &Prices,
    p: &Platform,
    w: &Workload,
    requested: &[CityId],
    shown: &[CityId],
    ha: bool,
) -> PlatformPlan {
    let cities = &prices.cities;
    let mut out = PlatformPlan {
        id: p.id.clone(),
        name: p.name.clone(),
        placement: p.placement,
        verdict: Verdict::Eligible,
        monthly_usd: None,
        per_deployment_usd: None,
        deployments: Vec::new(),
        cost: Vec::new(),
        latency: Vec::new(),
        worst_latency: None,
        effort: p.effort,
        guide: None,
        caveats: Vec::new(),
    };
    let placed = match place(prices, p, requested) {
        Ok(placed) => placed,
        Err(reason) => {
            out.verdict = Verdict::NotAvailable { reason };
            return out;
        }
    };
    out.deployments = placed
        .iter()
        .map(|(loc, serves)| Deployment {
            location: cities.get(*loc).code.clone(),
            city: cities.get(*loc).name.clone(),
            serves: serves.iter().map(|&c| cities.get(c).code.clone()).collect(),
        })
        .collect();

    // An edge platform is priced once, however many cities it runs in.
    let priced_deployments = match p.placement {
        Placement::Edge => 1,
        Placement::Region | Placement::Area | Placement::Single => placed.len(),
    };
    out.cost = cost_lines(prices, p, w, priced_deployments, ha);
    let total: f64 = out.cost.iter().map(|l| l.monthly_usd).sum();
    let gpu = w.gpu_hours_per_month * prices.gpu.per_hour;
    out.monthly_usd = Some(round_cents(total));
    out.per_deployment_usd = Some(round_cents((total - gpu) / priced_deployments as f64));

    let locations: Vec<CityId> = placed.iter().map(|(l, _)| *l).collect();
    out.latency = shown
        .iter()
        .map(|&c| city_latency(prices, p.placement, &locations, c, requested.contains(&c)))
        .collect();
    out.worst_latency = out
        .latency
        .iter()
        .filter(|l| l.requested)
        .max_by(|a, b| {
            (a.class, a.high_ms)
                .partial_cmp(&(b.class, b.high_ms))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .cloned();

    let mut reasons = Vec::new();
    let limit = p
        .max_request_seconds
        .map(|s| format!(" (requests end after {})", duration(s)))
        .unwrap_or_default();
    match (w.needs.long_running, p.long_running) {
        (true, Support::None) => reasons.push(format!("cannot hold a long-running agent{limit}")),
        (true, Support::Limited) => out
            .caveats
            .push(format!("long-running agents limited{limit}")),
        (true, Support::Full) | (false, _) => {}
    }
    match (w.needs.websockets, p.websockets) {
        (true, Support::None) => reasons.push("no WebSockets".to_owned()),
        (true, Support::Limited) => out.caveats.push("WebSockets limited".to_owned()),
        (true, Support::Full) | (false, _) => {}
    }
    if w.needs.residency && !p.residency {
        reasons.push("cannot keep each area's data in that area".to_owned());
    }
    if !reasons.is_empty() {
        out.verdict = Verdict::Unsuitable { reasons };
    }
    out
}

fn duration(seconds: f64) -> String {
    if seconds >= 3600.0 && seconds % 3600.0 == 0.0 {
        format!("{} h", seconds / 3600.0)
    } else if seconds >= 60.0 && seconds % 60.0 == 0.0 {
        format!("{} min", seconds / 60.0)
    } else {
        format!("{seconds} s")
    }
}

/// Deployments as (location, requested cities placed there), or why the platform cannot serve.
fn place(
    prices: &Prices,
    p: &Platform,
    requested: &[CityId],
) -> Result<Vec<(CityId, Vec<CityId>)>, String> {
    let cities = &prices.cities;
    if p.placement == Placement::Edge {
        return Ok(requested.iter().map(|&c| (c, vec![c])).collect());
    }
    let in_area = |c: CityId| -> Vec<CityId> {
        let area = cities.get(c).area;
        p.locations
            .iter()
            .copied()
            .filter(|&l| cities.get(l).area == area)
            .collect()
    };
    let uncovered: Vec<CityId> = requested
        .iter()
        .copied()
        .filter(|&c| in_area(c).is_empty())
        .collect();
    if !uncovered.is_empty() {
        let mut areas: Vec<&str> = uncovered
            .iter()
            .map(|&c| cities.get(c).area.label())
            .collect();
        areas.dedup();
        let codes: Vec<&str> = uncovered
            .iter()
            .map(|&c| cities.get(c).code.as_str())
            .collect();
        let note = p
            .coverage_note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        return Err(format!(
            "no region in {}{note}: cannot serve {}",
            areas.join(" or "),
            codes.join(", ")
        ));
    }
    // The candidate whose farthest city is nearest; ties go to a requested city, then to the
    // order of `locations`.
    let center = |candidates: &[CityId], group: &[CityId]| -> CityId {
        let worst = |l: CityId| {
            group
                .iter()
                .map(|&c| cities.rtt(c, l).ms)
                .fold(0.0_f64, f64::max)
        };
        let mut best = candidates[0];
        for &l in candidates {
            let (a, b) = (worst(l), worst(best));
            if a < b || (a == b && group.contains(&l) && !group.contains(&best)) {
                best = l;
            }
        }
        best
    };
    let mut placed: Vec<(CityId, Vec<CityId>)> = Vec::new();
    let mut add = |loc: CityId, serves: &[CityId]| match placed.iter_mut().find(|(l, _)| *l == loc)
    {
        Some((_, s)) => s.extend_from_slice(serves),
        None => placed.push((loc, serves.to_vec())),
    };
    match p.placement {
        Placement::Region => {
            for &c in requested {
                add(center(&in_area(c), &[c]), &[c]);
            }
        }
        Placement::Area => {
            let mut areas = Vec::new();
            for &c in requested {
                let area = cities.get(c).area;
                if !areas.contains(&area) {
                    areas.push(area);
                }
            }
            for area in areas {
                let group: Vec<CityId> = requested
                    .iter()
                    .copied()
                    .filter(|&c| cities.get(c).area == area)
                    .collect();
                add(center(&in_area(group[0]), &group), &group);
            }
        }
        Placement::Single => add(center(&p.locations, requested), requested),
        Placement::Edge => {}
    }
    Ok(placed)
}

fn cost_lines(
    prices: &Prices,
    p: &Platform,
    w: &Workload,
    deployments: usize,
    ha: bool,
) -> Vec<CostLine> {
    let d = deployments as f64;
    let mut lines = Vec::new();
    let mut line = |item: String, quantity: f64, unit_usd: f64| {
        if quantity > 0.0 && unit_usd > 0.0 {
            lines.push(CostLine {
                item,
                quantity: round_cents(quantity),
                unit_usd,
                monthly_usd: round_cents(quantity * unit_usd),
            });
        }
    };

    if let Some(app) = &p.app {
        let min = if ha {
            app.ha_min_per_deployment.unwrap_or(app.min_per_deployment)
        } else {
            app.min_per_deployment
        };
        let load = w.requests_per_day as f64 / d;
        let per_deployment = (load / app.requests_per_day).ceil().max(f64::from(min));
        line(
            format!("{}, {} per deployment", app.name, per_deployment),
            per_deployment * d,
            app.monthly,
        );
    }

    if let Some(db) = &p.database {
        let (base, base_label) = match db.nodes {
            DbNodes::PerDeployment => (
                d,
                if d > 1.0 {
                    format!("primary + {} in other deployments", d - 1.0)
                } else {
                    "primary".to_owned()
                },
            ),
            DbNodes::One => (1.0, "primary".to_owned()),
        };
        let standby = ha && db.ha_standby;
        let nodes = base + if standby { 1.0 } else { 0.0 };
        let label = if standby {
            format!("{base_label} + standby")
        } else {
            base_label
        };
        line(format!("{}: {label}", db.name), nodes, db.node_monthly);
        let extra_gb = (w.db_gb - db.included_gb).max(0.0);
        line(
            format!(
                "database GB above {} GB: {} GB x {} nodes",
                db.included_gb, extra_gb, nodes
            ),
            extra_gb * nodes,
            db.per_gb_monthly,
        );
    }

    if let Some(r) = &p.requests {
        let millions = w.requests_per_day as f64 * prices.days_per_month / 1e6;
        line(
            format!("requests ({millions:.1}M a month)"),
            millions,
            r.per_million,
        );
        let compute_per_million =
            1e6 * r.billed_seconds * (r.vcpu * r.vcpu_second + r.memory_gb * r.gb_second);
        line(
            format!(
                "compute per million requests ({} s x {} vCPU, {} GB)",
                r.billed_seconds, r.vcpu, r.memory_gb
            ),
            millions,
            round_cents(compute_per_million),
        );
    }

    for item in &p.items {
        let copies = if ha {
            item.ha_copies.unwrap_or(item.copies)
        } else {
            item.copies
        };
        let per = match item.per {
            Per::Deployment => d,
            Per::ExtraDeployment => d - 1.0,
            Per::Once => 1.0,
        };
        line(item.name.clone(), per * f64::from(copies), item.monthly);
    }

    line(
        format!("GPU hours ({})", prices.gpu.provider),
        w.gpu_hours_per_month,
        prices.gpu.per_hour,
    );
    lines
}

fn city_latency(
    prices: &Prices,
    placement: Placement,
    locations: &[CityId],
    c: CityId,
    requested: bool,
) -> CityLatency {
    let cities = &prices.cities;
    let (from, rtt) = match placement {
        Placement::Edge => (c, cities.rtt(c, c)),
        Placement::Region | Placement::Area | Placement::Single => locations
            .iter()
            .map(|&l| (l, cities.rtt(c, l)))
            // The first of equally near deployments.
            .min_by(|(_, a), (_, b)| a.ms.total_cmp(&b.ms))
            .unwrap_or((c, cities.rtt(c, c))),
    };
    let (lo, hi) = prices.latency.in_region_ms;
    let (low, high) = (lo + rtt.ms, hi + rtt.ms);
    let class = if from == c {
        LatencyClass::InCity
    } else if high <= prices.latency.good_up_to_ms {
        LatencyClass::Good
    } else if high <= prices.latency.acceptable_up_to_ms {
        LatencyClass::Acceptable
    } else {
        LatencyClass::TooSlow
    };
    CityLatency {
        code: cities.get(c).code.clone(),
        city: cities.get(c).name.clone(),
        requested,
        served_from: cities.get(from).code.clone(),
        rtt_ms: rtt.ms,
        estimated: rtt.estimated,
        low_ms: low,
        high_ms: high,
        class,
    }
}

/// How many of the workload's needs the platform only partly meets.
fn limited(p: &PlatformPlan) -> usize {
    p.caveats.len()
}

/// The decision matrix: only eligible platforms; the best latency class of their slowest
/// requested city; then fewest limits; then cost, where costs within `cost_tie_percent` of the
/// cheapest count as equal and less effort wins.
fn decide(prices: &Prices, platforms: &mut Vec<PlatformPlan>) -> Option<Recommendation> {
    let key = |p: &PlatformPlan| {
        (
            p.worst_latency
                .as_ref()
                .map_or(LatencyClass::TooSlow, |l| l.class),
            limited(p),
        )
    };
    let cost = |p: &PlatformPlan| p.monthly_usd.unwrap_or(f64::INFINITY);
    let rank = |p: &PlatformPlan| match p.verdict {
        Verdict::Recommended => 0,
        Verdict::Eligible => 1,
        Verdict::Unsuitable { .. } => 2,
        Verdict::NotAvailable { .. } => 3,
    };
    let eligible: Vec<usize> = (0..platforms.len())
        .filter(|&i| platforms[i].verdict == Verdict::Eligible)
        .collect();
    let best = eligible.iter().map(|&i| key(&platforms[i])).min();
    let recommendation = best.map(|best| {
        let group: Vec<usize> = eligible
            .iter()
            .copied()
            .filter(|&i| key(&platforms[i]) == best)
            .collect();
        let cheapest = group
            .iter()
            .copied()
            .min_by(|&a, &b| cost(&platforms[a]).total_cmp(&cost(&platforms[b])))
            .unwrap_or(group[0]);
        let ceiling = cost(&platforms[cheapest]) * (1.0 + prices.cost_tie_fraction);
        let winner = group
            .iter()
            .copied()
            .filter(|&i| cost(&platforms[i]) <= ceiling)
            .min_by(|&a, &b| {
                let (pa, pb) = (&platforms[a], &platforms[b]);
                pa.effort
                    .cmp(&pb.effort)
                    .then(cost(pa).total_cmp(&cost(pb)))
            })
            .unwrap_or(cheapest);
        platforms[winner].verdict = Verdict::Recommended;
        (winner, group, cheapest)
    });

    // Display order: recommended, eligible by (latency, limits, cost), unsuitable by cost, the rest.
    let mut order: Vec<usize> = (0..platforms.len()).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (&platforms[a], &platforms[b]);
        rank(pa)
            .cmp(&rank(pb))
            .then(key(pa).cmp(&key(pb)))
            .then(cost(pa).total_cmp(&cost(pb)))
            .then(pa.name.cmp(&pb.name))
    });
    let (winner, group, cheapest) = recommendation?;
    let why = why(prices, platforms, winner, &group, cheapest, &order);
    let w = &platforms[winner];
    let rec = Recommendation {
        platform: w.id.clone(),
        name: w.name.clone(),
        monthly_usd: cost(w),
        why,
    };
    let mut taken: Vec<Option<PlatformPlan>> =
        std::mem::take(platforms).into_iter().map(Some).collect();
    *platforms = order.iter().filter_map(|&i| taken[i].take()).collect();
    Some(rec)
}

fn dollars(x: f64) -> String {
    format!("${}", thousands(x))
}

fn range(l: &CityLatency) -> String {
    let tilde = if l.estimated { "~" } else { "" };
    format!("{tilde}{}-{} ms", l.low_ms, l.high_ms)
}

fn why(
    prices: &Prices,
    platforms: &[PlatformPlan],
    winner: usize,
    group: &[usize],
    cheapest: usize,
    order: &[usize],
) -> String {
    let w = &platforms[winner];
    let cost = w.monthly_usd.unwrap_or_default();
    let (class, worst) = match &w.worst_latency {
        Some(l) if l.class == LatencyClass::InCity => (l.class, range(l)),
        Some(l) => (l.class, format!("slowest: {} {}", l.city, range(l))),
        None => (LatencyClass::TooSlow, String::new()),
    };
    let what = match class {
        LatencyClass::InCity => "has a deployment in every requested city".to_owned(),
        LatencyClass::Good => format!(
            "keeps every requested city within {} ms",
            prices.latency.good_up_to_ms
        ),
        LatencyClass::Acceptable => format!(
            "keeps every requested city within {} ms",
            prices.latency.acceptable_up_to_ms
        ),
        LatencyClass::TooSlow => "comes closest to the requested cities".to_owned(),
    };
    let mut s = if group.len() == 1 {
        format!(
            "{} is the only eligible platform that {what} ({worst}), at ~{}/month.",
            w.name,
            dollars(cost)
        )
    } else if winner == cheapest {
        format!(
            "{} {what} ({worst}) and is the cheapest platform that does, at ~{}/month.",
            w.name,
            dollars(cost)
        )
    } else {
        let c = &platforms[cheapest];
        format!(
            "{} {what} ({worst}) at ~{}/month, within {}% of the cheapest that does ({}, ~{}), with less operational effort.",
            w.name,
            dollars(cost),
            prices.cost_tie_fraction * 100.0,
            c.name,
            dollars(c.monthly_usd.unwrap_or_default())
        )
    };
    let next = order
        .iter()
        .map(|&i| &platforms[i])
        .find(|p| p.id != w.id && p.verdict == Verdict::Eligible);
    if let Some(n) = next {
        let slowest = n
            .worst_latency
            .as_ref()
            .map(|l| match l.class {
                LatencyClass::InCity => format!("all in city, {}", range(l)),
                LatencyClass::Good | LatencyClass::Acceptable | LatencyClass::TooSlow => {
                    format!("slowest {} {} ({})", l.city, range(l), l.class.label())
                }
            })
            .unwrap_or_default();
        s.push_str(&format!(
            " Next: {}, ~{}/month, {slowest}.",
            n.name,
            dollars(n.monthly_usd.unwrap_or_default())
        ));
    }
    s
}

/// The guide's rounding of a figure: $10 under $300, $50 under $1,000, $100 above.
pub(crate) fn guide_step(figure: f64) -> f64 {
    if figure < 300.0 {
        10.0
    } else if figure < 1000.0 {
        50.0
    } else {
        100.0
    }
}

/// "Over ~$2,000/month on Fly.io": reported once the estimate, rounded the guide's way, reaches
/// the threshold.
fn migration_note(prices: &Prices, platforms: &[PlatformPlan]) -> Option<MigrationNote> {
    let m = &prices.migration;
    let (from_id, to_id) = (&prices.platforms[m.from].id, &prices.platforms[m.to].id);
    let from = platforms.iter().find(|p| &p.id == from_id)?;
    let to = platforms.iter().find(|p| &p.id == to_id)?;
    let monthly = from.monthly_usd?;
    let step = guide_step(m.threshold_monthly);
    if (monthly / step).round() * step < m.threshold_monthly {
        return None;
    }
    let comparison = match to.monthly_usd {
        Some(t) if t < monthly => format!("it would cost ~{}/month here", dollars(t)),
        Some(t) => format!(
            "at these prices it would cost ~{}/month, so move for control and features, not cost",
            dollars(t)
        ),
        None => "it cannot serve these regions".to_owned(),
    };
    Some(MigrationNote {
        from: from.id.clone(),
        from_monthly_usd: monthly,
        threshold_usd: m.threshold_monthly,
        to: to.id.clone(),
        to_monthly_usd: to.monthly_usd,
        message: format!(
            "{} at ~{}/month is over the guide's ~{}/month threshold: consider Kubernetes ({}), though {comparison}.",
            from.name,
            dollars(monthly),
            dollars(m.threshold_monthly),
            to.name
        ),
    })
}

fn same_set(a: &[CityId], b: &[CityId]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

fn guide_phase(prices: &Prices, requested: &[CityId]) -> Option<GuidePhase> {
    let phase = prices
        .phases
        .iter()
        .find(|p| same_set(&p.regions, requested))?;
    Some(GuidePhase {
        name: phase.name.clone(),
        platform: prices.platforms[phase.platform].id.clone(),
        monthly_usd: phase.monthly,
        latency: phase
            .latency
            .iter()
            .map(|&(c, lo, hi)| GuideLatency {
                code: prices.cities.get(c).code.clone(),
                low_ms: lo,
                high_ms: hi,
            })
            .collect(),
    })
}
