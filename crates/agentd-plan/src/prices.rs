//! The prices file: a serde mirror of the TOML (`deny_unknown_fields`), then validation that
//! resolves city codes and collects every problem with its line and dotted key.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml_edit::ImDocument;

use crate::error::{PlanError, PriceError, PriceErrors};
use crate::geo::{Cities, City, CityId};
use crate::locate::{line_of, path_at, span_of, KeyPath};
use crate::model::GuideFigure;

/// The built-in prices file: the guide's figures (2025-11-11) and the calibration notes.
pub const BUILTIN_PRICES: &str = include_str!("prices.toml");

const BUILTIN_ORIGIN: &str = "built-in prices";

/// A validated prices and latency table.
#[derive(Debug, Clone)]
pub struct Prices {
    pub(crate) origin: String,
    pub(crate) guide: String,
    pub(crate) date: String,
    pub(crate) days_per_month: f64,
    pub(crate) ha_from_requests_per_day: u64,
    pub(crate) migration: Migration,
    pub(crate) gpu: Gpu,
    pub(crate) latency: LatencyModel,
    pub(crate) cost_tie_fraction: f64,
    pub(crate) cities: Cities,
    pub(crate) platforms: Vec<Platform>,
    pub(crate) phases: Vec<Phase>,
    pub(crate) scale_points: Vec<ScalePoint>,
}

impl Prices {
    /// The built-in table (`src/prices.toml`).
    pub fn builtin() -> Self {
        match Self::parse(BUILTIN_PRICES, BUILTIN_ORIGIN) {
            Ok(p) => p,
            // A test parses the built-in file, so this cannot ship broken.
            Err(e) => panic!("the built-in prices file is invalid: {e}"),
        }
    }

    /// Reads and validates a prices file.
    pub fn from_file(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Validates prices from TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PlanError> {
        let fail = |errors: Vec<PriceError>| PlanError::Prices(PriceErrors(errors));
        let doc = ImDocument::parse(text.to_owned()).map_err(|e| {
            let offset = e.span().map_or(text.len(), |s| s.start);
            fail(vec![PriceError {
                file: origin.to_owned(),
                line: Some(line_of(text, offset)),
                key: String::new(),
                message: one_line(e.message()),
            }])
        })?;
        let raw: Raw = toml_edit::de::from_document(doc.clone())
            .map_err(|e| fail(vec![serde_error(text, origin, doc.as_table(), &e)]))?;
        let mut sink = Sink {
            origin,
            text,
            root: doc.as_table(),
            errors: Vec::new(),
        };
        let prices = validate(raw, origin, &mut sink);
        if sink.errors.is_empty() {
            Ok(prices)
        } else {
            // In file order, which is how people fix them.
            sink.errors.sort_by_key(|e| e.line);
            Err(fail(sink.errors))
        }
    }

    /// Where the prices come from: `built-in prices` or the file's path.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The date of the figures (the guide's "Last Updated").
    pub fn date(&self) -> &str {
        &self.date
    }

    /// Every city (region) code, sorted.
    pub fn city_codes(&self) -> Vec<String> {
        self.cities.codes()
    }

    /// The guide's phases, as (name, region codes).
    pub fn phases(&self) -> Vec<(String, Vec<String>)> {
        self.phases
            .iter()
            .map(|p| {
                let codes = p.regions.iter().map(|&c| self.cities.get(c).code.clone());
                (p.name.clone(), codes.collect())
            })
            .collect()
    }
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A serde error located by its span. "missing field" errors point at the table, so the field is
/// appended to the table's path.
fn serde_error(
    text: &str,
    origin: &str,
    root: &toml_edit::Table,
    e: &toml_edit::de::Error,
) -> PriceError {
    let offset = e.span().map_or(0, |s| s.start);
    let mut path = path_at(root, offset);
    let message = one_line(e.message());
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        path = path.key(field);
    }
    PriceError {
        file: origin.to_owned(),
        line: e.span().map(|s| line_of(text, s.start)),
        key: path.to_string(),
        message,
    }
}

/// Collects validation errors, located by walking the document along their key path.
struct Sink<'a> {
    origin: &'a str,
    text: &'a str,
    root: &'a toml_edit::Table,
    errors: Vec<PriceError>,
}

impl Sink<'_> {
    fn error(&mut self, path: &KeyPath, message: impl Into<String>) {
        let line = span_of(self.root, path).map(|s| line_of(self.text, s.start));
        self.errors.push(PriceError {
            file: self.origin.to_owned(),
            line,
            key: path.to_string(),
            message: message.into(),
        });
    }

    /// A money or size figure: finite and not negative.
    fn amount(&mut self, path: &KeyPath, value: f64) {
        if !value.is_finite() || value < 0.0 {
            self.error(path, format!("must be a number >= 0, got {value}"));
        }
    }

    /// A figure that divides: finite and above zero.
    fn positive(&mut self, path: &KeyPath, value: f64) {
        if !value.is_finite() || value <= 0.0 {
            self.error(path, format!("must be a number > 0, got {value}"));
        }
    }

    fn city(&mut self, cities: &Cities, path: &KeyPath, code: &str) -> Option<CityId> {
        let found = cities.find(code);
        if found.is_none() {
            self.error(
                path,
                format!(
                    "unknown city `{code}`; add it under [cities] or use one of: {}",
                    cities.codes().join(", ")
                ),
            );
        }
        found
    }
}

// ---- The raw mirror of the file -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    source: RawSource,
    model: RawModel,
    migration: RawMigration,
    gpu: Gpu,
    latency: RawLatency,
    #[serde(default)]
    rtt: BTreeMap<String, f64>,
    decision: RawDecision,
    cities: BTreeMap<String, RawCity>,
    platforms: BTreeMap<String, RawPlatform>,
    #[serde(default)]
    phases: Vec<RawPhase>,
    #[serde(default)]
    scale_points: Vec<RawScalePoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    guide: String,
    date: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    days_per_month: f64,
    ha_from_requests_per_day: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMigration {
    from: String,
    threshold_monthly: f64,
    to: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    in_region_ms: [f64; 2],
    good_up_to_ms: f64,
    acceptable_up_to_ms: f64,
    reference: Vec<String>,
    estimate_fixed_ms: f64,
    estimate_route_factor: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecision {
    cost_tie_percent: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCity {
    name: String,
    area: Area,
    lat: f64,
    lon: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlatform {
    name: String,
    placement: Placement,
    locations: Vec<String>,
    #[serde(default)]
    coverage_note: Option<String>,
    effort: u8,
    websockets: Support,
    long_running: Support,
    #[serde(default)]
    max_request_seconds: Option<f64>,
    residency: bool,
    #[serde(default)]
    app: Option<App>,
    #[serde(default)]
    database: Option<Database>,
    #[serde(default)]
    requests: Option<Requests>,
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: String,
    platform: String,
    regions: Vec<String>,
    monthly: f64,
    latency: BTreeMap<String, [f64; 2]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScalePoint {
    name: String,
    requests_per_day: u64,
    db_gb: f64,
    regions: Vec<String>,
    monthly: BTreeMap<String, f64>,
    #[serde(default)]
    at_least: Vec<String>,
    #[serde(default)]
    not_available: Vec<String>,
}

// ---- Validated types (the cost parts are already plain numbers) ------------------------------

/// A continent: coverage and `area` placement group cities by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    Europe,
    Asia,
    NorthAmerica,
    SouthAmerica,
    Oceania,
    Africa,
}

impl Area {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Area::Europe => "Europe",
            Area::Asia => "Asia",
            Area::NorthAmerica => "North America",
            Area::SouthAmerica => "South America",
            Area::Oceania => "Oceania",
            Area::Africa => "Africa",
        }
    }
}

/// How a platform turns requested cities into deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// One deployment per requested city, at the nearest location in its area.
    Region,
    /// One deployment per area (a cluster per continent).
    Area,
    /// One deployment for all.
    Single,
    /// Runs in every city; priced once.
    Edge,
}

/// How far a platform supports something the workload may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    Full,
    Limited,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DbNodes {
    /// The primary plus a replica (or an own database) in every other deployment.
    PerDeployment,
    /// One database for all deployments.
    One,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Per {
    Deployment,
    ExtraDeployment,
    Once,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct App {
    pub(crate) name: String,
    pub(crate) monthly: f64,
    pub(crate) requests_per_day: f64,
    pub(crate) min_per_deployment: u32,
    #[serde(default)]
    pub(crate) ha_min_per_deployment: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Database {
    pub(crate) name: String,
    pub(crate) node_monthly: f64,
    pub(crate) nodes: DbNodes,
    pub(crate) included_gb: f64,
    pub(crate) per_gb_monthly: f64,
    pub(crate) ha_standby: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Requests {
    pub(crate) per_million: f64,
    pub(crate) billed_seconds: f64,
    pub(crate) vcpu: f64,
    pub(crate) vcpu_second: f64,
    pub(crate) memory_gb: f64,
    pub(crate) gb_second: f64,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Item {
    pub(crate) name: String,
    pub(crate) monthly: f64,
    pub(crate) per: Per,
    #[serde(default = "one")]
    pub(crate) copies: u32,
    #[serde(default)]
    pub(crate) ha_copies: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Gpu {
    pub(crate) provider: String,
    pub(crate) per_hour: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct Migration {
    pub(crate) from: usize,
    pub(crate) threshold_monthly: f64,
    pub(crate) to: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct LatencyModel {
    pub(crate) in_region_ms: (f64, f64),
    pub(crate) good_up_to_ms: f64,
    pub(crate) acceptable_up_to_ms: f64,
    pub(crate) reference: Vec<CityId>,
}

#[derive(Debug, Clone)]
pub(crate) struct Platform {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) placement: Placement,
    pub(crate) locations: Vec<CityId>,
    pub(crate) coverage_note: Option<String>,
    pub(crate) effort: u8,
    pub(crate) websockets: Support,
    pub(crate) long_running: Support,
    pub(crate) max_request_seconds: Option<f64>,
    pub(crate) residency: bool,
    pub(crate) app: Option<App>,
    pub(crate) database: Option<Database>,
    pub(crate) requests: Option<Requests>,
    pub(crate) items: Vec<Item>,
}

/// A column of the guide's cost table.
#[derive(Debug, Clone)]
pub(crate) struct ScalePoint {
    pub(crate) name: String,
    pub(crate) requests_per_day: u64,
    pub(crate) db_gb: f64,
    pub(crate) regions: Vec<CityId>,
    /// (platform index, the guide's figure).
    pub(crate) figures: Vec<(usize, GuideFigure)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Phase {
    pub(crate) name: String,
    pub(crate) platform: usize,
    pub(crate) regions: Vec<CityId>,
    pub(crate) monthly: f64,
    /// The guide's latency range per city.
    pub(crate) latency: Vec<(CityId, f64, f64)>,
}

// ---- Validation ------------------------------------------------------------------------------

fn validate(raw: Raw, origin: &str, sink: &mut Sink<'_>) -> Prices {
    let model = KeyPath::of("model");
    sink.positive(&model.key("days_per_month"), raw.model.days_per_month);
    sink.amount(&KeyPath::of("gpu.per_hour"), raw.gpu.per_hour);
    let decision = KeyPath::of("decision.cost_tie_percent");
    sink.amount(&decision, raw.decision.cost_tie_percent);

    let cities = validate_cities(&raw, sink);
    let latency = validate_latency(&raw.latency, &cities, sink);

    let mut platforms = Vec::new();
    for (id, p) in raw.platforms {
        platforms.push(validate_platform(id, p, &cities, sink));
    }
    let platform_index = |sink: &mut Sink<'_>, path: &KeyPath, id: &str| {
        let found = platforms.iter().position(|p| p.id == id);
        if found.is_none() {
            let ids: Vec<&str> = platforms.iter().map(|p| p.id.as_str()).collect();
            sink.error(
                path,
                format!(
                    "unknown platform `{id}`; the platforms are: {}",
                    ids.join(", ")
                ),
            );
        }
        found.unwrap_or(0)
    };

    let mig = KeyPath::of("migration");
    let migration = Migration {
        from: platform_index(sink, &mig.key("from"), &raw.migration.from),
        threshold_monthly: raw.migration.threshold_monthly,
        to: platform_index(sink, &mig.key("to"), &raw.migration.to),
    };
    sink.amount(&mig.key("threshold_monthly"), migration.threshold_monthly);

    let mut phases = Vec::new();
    for (i, p) in raw.phases.into_iter().enumerate() {
        let path = KeyPath::of("phases").index(i);
        let platform = platform_index(sink, &path.key("platform"), &p.platform);
        sink.amount(&path.key("monthly"), p.monthly);
        let regions = p
            .regions
            .iter()
            .enumerate()
            .filter_map(|(j, c)| sink.city(&cities, &path.key("regions").index(j), c))
            .collect();
        let mut ranges = Vec::new();
        for (code, [lo, hi]) in &p.latency {
            let at = path.key("latency").key(code);
            if let Some(id) = sink.city(&cities, &at, code) {
                if !(lo.is_finite() && hi.is_finite() && 0.0 <= *lo && lo <= hi) {
                    sink.error(
                        &at,
                        format!("must be [low, high] with 0 <= low <= high, got [{lo}, {hi}]"),
                    );
                }
                ranges.push((id, *lo, *hi));
            }
        }
        phases.push(Phase {
            name: p.name,
            platform,
            regions,
            monthly: p.monthly,
            latency: ranges,
        });
    }

    let mut scale_points = Vec::new();
    for (i, s) in raw.scale_points.into_iter().enumerate() {
        let path = KeyPath::of("scale_points").index(i);
        sink.amount(&path.key("db_gb"), s.db_gb);
        let regions = s
            .regions
            .iter()
            .enumerate()
            .filter_map(|(j, c)| sink.city(&cities, &path.key("regions").index(j), c))
            .collect();
        let mut figures = Vec::new();
        for (id, &monthly) in &s.monthly {
            let at = path.key("monthly").key(id);
            sink.amount(&at, monthly);
            let platform = platform_index(sink, &at, id);
            let figure = if s.at_least.contains(id) {
                GuideFigure::AtLeast {
                    monthly_usd: monthly,
                }
            } else {
                GuideFigure::About {
                    monthly_usd: monthly,
                }
            };
            figures.push((platform, figure));
        }
        for (j, id) in s.at_least.iter().enumerate() {
            if !s.monthly.contains_key(id) {
                sink.error(
                    &path.key("at_least").index(j),
                    format!("`{id}` has no figure under `monthly`"),
                );
            }
        }
        for (j, id) in s.not_available.iter().enumerate() {
            let platform = platform_index(sink, &path.key("not_available").index(j), id);
            figures.push((platform, GuideFigure::NotAvailable));
        }
        scale_points.push(ScalePoint {
            name: s.name,
            requests_per_day: s.requests_per_day,
            db_gb: s.db_gb,
            regions,
            figures,
        });
    }

    Prices {
        origin: origin.to_owned(),
        guide: raw.source.guide,
        date: raw.source.date,
        days_per_month: raw.model.days_per_month,
        ha_from_requests_per_day: raw.model.ha_from_requests_per_day,
        migration,
        gpu: raw.gpu,
        latency,
        cost_tie_fraction: raw.decision.cost_tie_percent / 100.0,
        cities,
        platforms,
        phases,
        scale_points,
    }
}

fn validate_cities(raw: &Raw, sink: &mut Sink<'_>) -> Cities {
    let mut list = Vec::new();
    for (code, c) in &raw.cities {
        let path = KeyPath::of("cities").key(code);
        if !(c.lat.is_finite() && (-90.0..=90.0).contains(&c.lat)) {
            sink.error(
                &path.key("lat"),
                format!("must be a latitude in [-90, 90], got {}", c.lat),
            );
        }
        if !(c.lon.is_finite() && (-180.0..=180.0).contains(&c.lon)) {
            sink.error(
                &path.key("lon"),
                format!("must be a longitude in [-180, 180], got {}", c.lon),
            );
        }
        list.push(City {
            code: code.clone(),
            name: c.name.clone(),
            area: c.area,
            lat: c.lat,
            lon: c.lon,
        });
    }
    let mut cities = Cities::new(
        list,
        raw.latency.estimate_fixed_ms,
        raw.latency.estimate_route_factor,
    );
    let lat = KeyPath::of("latency");
    sink.amount(&lat.key("estimate_fixed_ms"), raw.latency.estimate_fixed_ms);
    sink.amount(
        &lat.key("estimate_route_factor"),
        raw.latency.estimate_route_factor,
    );

    let mut known = HashMap::new();
    for (pair, &ms) in &raw.rtt {
        let path = KeyPath::of("rtt").key(pair);
        let Some((a, b)) = pair.split_once('-') else {
            sink.error(&path, "must name two cities as `code-code`, e.g. `cdg-nrt`");
            continue;
        };
        sink.amount(&path, ms);
        let (Some(a), Some(b)) = (sink.city(&cities, &path, a), sink.city(&cities, &path, b))
        else {
            continue;
        };
        if a == b {
            sink.error(
                &path,
                "names the same city twice; the round trip within a city is latency.in_region_ms",
            );
            continue;
        }
        known.insert((a.min(b), a.max(b)), ms);
    }
    cities.set_known(known);
    cities
}

fn validate_latency(raw: &RawLatency, cities: &Cities, sink: &mut Sink<'_>) -> LatencyModel {
    let path = KeyPath::of("latency");
    let [lo, hi] = raw.in_region_ms;
    if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi) {
        sink.error(
            &path.key("in_region_ms"),
            format!("must be [low, high] with 0 <= low <= high, got [{lo}, {hi}]"),
        );
    }
    sink.amount(&path.key("good_up_to_ms"), raw.good_up_to_ms);
    sink.amount(&path.key("acceptable_up_to_ms"), raw.acceptable_up_to_ms);
    if raw.acceptable_up_to_ms < raw.good_up_to_ms {
        sink.error(
            &path.key("acceptable_up_to_ms"),
            "must be at least good_up_to_ms",
        );
    }
    let reference = raw
        .reference
        .iter()
        .enumerate()
        .filter_map(|(i, c)| sink.city(cities, &path.key("reference").index(i), c))
        .collect();
    LatencyModel {
        in_region_ms: (lo, hi),
        good_up_to_ms: raw.good_up_to_ms,
        acceptable_up_to_ms: raw.acceptable_up_to_ms,
        reference,
    }
}

fn validate_platform(id: String, p: RawPlatform, cities: &Cities, sink: &mut Sink<'_>) -> Platform {
    let path = KeyPath::of("platforms").key(&id);
    let locations: Vec<CityId> = p
        .locations
        .iter()
        .enumerate()
        .filter_map(|(i, c)| sink.city(cities, &path.key("locations").index(i), c))
        .collect();
    match p.placement {
        Placement::Edge => {}
        Placement::Region | Placement::Area | Placement::Single => {
            if p.locations.is_empty() {
                sink.error(
                    &path.key("locations"),
                    "must list at least one city (only `edge` placement runs everywhere)",
                );
            }
        }
    }
    if !(1..=5).contains(&p.effort) {
        sink.error(
            &path.key("effort"),
            format!("must be 1 (least effort) to 5 (most), got {}", p.effort),
        );
    }
    if let Some(s) = p.max_request_seconds {
        sink.positive(&path.key("max_request_seconds"), s);
    }
    if let Some(app) = &p.app {
        let at = path.key("app");
        sink.amount(&at.key("monthly"), app.monthly);
        sink.positive(&at.key("requests_per_day"), app.requests_per_day);
    }
    if let Some(db) = &p.database {
        let at = path.key("database");
        sink.amount(&at.key("node_monthly"), db.node_monthly);
        sink.amount(&at.key("included_gb"), db.included_gb);
        sink.amount(&at.key("per_gb_monthly"), db.per_gb_monthly);
    }
    if let Some(r) = &p.requests {
        let at = path.key("requests");
        for (key, v) in [
            ("per_million", r.per_million),
            ("billed_seconds", r.billed_seconds),
            ("vcpu", r.vcpu),
            ("vcpu_second", r.vcpu_second),
            ("memory_gb", r.memory_gb),
            ("gb_second", r.gb_second),
        ] {
            sink.amount(&at.key(key), v);
        }
    }
    for (i, item) in p.items.iter().enumerate() {
        sink.amount(&path.key("items").index(i).key("monthly"), item.monthly);
    }
    Platform {
        id,
        name: p.name,
        placement: p.placement,
        locations,
        coverage_note: p.coverage_note,
        effort: p.effort,
        websockets: p.websockets,
        long_running: p.long_running,
        max_request_seconds: p.max_request_seconds,
        residency: p.residency,
        app: p.app,
        database: p.database,
        requests: p.requests,
        items: p.items,
    }
}
