//! Regions, data residency routing, pool schedules and the names `deploy render` uses:
//! `[regions]`, `[deploy]` and the scaling keys of `[pools.<name>]`.

use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::error::KeyPath;
use crate::raw::{RawBusinessHours, RawDeploy, RawPool, RawRegions};
use crate::validate::{non_negative_ms, Sink};
use crate::Secret;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A region agentd knows: Fly.io's region codes, with the nearest region of the big clouds
/// (used by `deploy render` for Kubernetes overlays and Cloud Run, and by `agentd plan`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    /// Fly.io region code.
    pub code: &'static str,
    /// The city it serves.
    pub city: &'static str,
    /// ISO 3166 country code.
    pub country: &'static str,
    /// Google Cloud region (GKE, Cloud Run, Cloud SQL).
    pub gcp: &'static str,
    /// AWS region (EKS, RDS).
    pub aws: &'static str,
    /// An IANA time zone of the city (the default for business hours in a region overlay).
    pub timezone: &'static str,
}

/// Fly.io's regions (2025), nearest cloud regions, and time zones.
pub const REGIONS: &[Region] = &[
    region(
        "ams",
        "Amsterdam",
        "NL",
        "europe-west4",
        "eu-west-1",
        "Europe/Amsterdam",
    ),
    region(
        "arn",
        "Stockholm",
        "SE",
        "europe-north1",
        "eu-north-1",
        "Europe/Stockholm",
    ),
    region(
        "bom",
        "Mumbai",
        "IN",
        "asia-south1",
        "ap-south-1",
        "Asia/Kolkata",
    ),
    region(
        "cdg",
        "Paris",
        "FR",
        "europe-west9",
        "eu-west-3",
        "Europe/Paris",
    ),
    region(
        "dfw",
        "Dallas",
        "US",
        "us-south1",
        "us-east-2",
        "America/Chicago",
    ),
    region(
        "ewr",
        "New York",
        "US",
        "us-east4",
        "us-east-1",
        "America/New_York",
    ),
    region(
        "fra",
        "Frankfurt",
        "DE",
        "europe-west3",
        "eu-central-1",
        "Europe/Berlin",
    ),
    region(
        "gru",
        "São Paulo",
        "BR",
        "southamerica-east1",
        "sa-east-1",
        "America/Sao_Paulo",
    ),
    region(
        "iad",
        "Ashburn",
        "US",
        "us-east4",
        "us-east-1",
        "America/New_York",
    ),
    region(
        "jnb",
        "Johannesburg",
        "ZA",
        "africa-south1",
        "af-south-1",
        "Africa/Johannesburg",
    ),
    region(
        "lax",
        "Los Angeles",
        "US",
        "us-west2",
        "us-west-1",
        "America/Los_Angeles",
    ),
    region(
        "lhr",
        "London",
        "GB",
        "europe-west2",
        "eu-west-2",
        "Europe/London",
    ),
    region(
        "nrt",
        "Tokyo",
        "JP",
        "asia-northeast1",
        "ap-northeast-1",
        "Asia/Tokyo",
    ),
    region(
        "ord",
        "Chicago",
        "US",
        "us-central1",
        "us-east-2",
        "America/Chicago",
    ),
    region(
        "sin",
        "Singapore",
        "SG",
        "asia-southeast1",
        "ap-southeast-1",
        "Asia/Singapore",
    ),
    region(
        "sjc",
        "San Francisco",
        "US",
        "us-west1",
        "us-west-1",
        "America/Los_Angeles",
    ),
    region(
        "syd",
        "Sydney",
        "AU",
        "australia-southeast1",
        "ap-southeast-2",
        "Australia/Sydney",
    ),
    region(
        "yyz",
        "Toronto",
        "CA",
        "northamerica-northeast2",
        "ca-central-1",
        "America/Toronto",
    ),
];

const fn region(
    code: &'static str,
    city: &'static str,
    country: &'static str,
    gcp: &'static str,
    aws: &'static str,
    timezone: &'static str,
) -> Region {
    Region {
        code,
        city,
        country,
        gcp,
        aws,
        timezone,
    }
}

/// The region with this code (lower case).
pub fn region_by_code(code: &str) -> Option<&'static Region> {
    REGIONS.iter().find(|r| r.code == code)
}

/// "use one of: ams, arn, …" for error messages.
pub fn region_codes_hint() -> String {
    let codes: Vec<&str> = REGIONS.iter().map(|r| r.code).collect();
    format!("use one of: {}", codes.join(", "))
}

/// How a request that belongs to another region gets there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionRouting {
    /// Answer with `fly-replay: region=<code>`; Fly.io's proxy sends the request there.
    FlyReplay,
    /// Proxy the request to the region's URL.
    Forward,
}

impl RegionRouting {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionRouting::FlyReplay => "fly-replay",
            RegionRouting::Forward => "forward",
        }
    }
}

/// `[regions]`, validated. With an empty `list` the deployment is one region: nothing is
/// routed between regions and tenants cannot be pinned.
#[derive(Debug, Clone)]
pub struct RegionsConfig {
    /// Region codes in the order written; `primary` is one of them.
    pub list: Vec<String>,
    /// The primary database's region (`None` iff `list` is empty).
    pub primary: Option<String>,
    /// How requests reach another region.
    pub routing: RegionRouting,
    /// How long after a write a caller's requests go to the primary.
    pub read_your_writes: Duration,
    /// Region code → base URL (no trailing slash).
    pub urls: Vec<(String, Secret)>,
    /// Region code → that region's own database (`[regions.store_urls]`).
    pub store_urls: Vec<(String, Secret)>,
}

impl RegionsConfig {
    /// Whether requests are routed between regions at all.
    pub fn is_multi_region(&self) -> bool {
        self.list.len() > 1
    }

    /// Whether `code` is one of the deployment's regions.
    pub fn serves(&self, code: &str) -> bool {
        self.list.iter().any(|r| r == code)
    }

    /// The database of region `code`, if it has its own (`[regions.store_urls]`).
    pub fn store_url(&self, code: &str) -> Option<&Secret> {
        self.store_urls
            .iter()
            .find(|(r, _)| r == code)
            .map(|(_, u)| u)
    }

    /// The base URL of `code`'s agentd, if configured.
    pub fn url(&self, code: &str) -> Option<&str> {
        self.urls
            .iter()
            .find(|(r, _)| r == code)
            .map(|(_, u)| u.expose())
    }
}

/// `[deploy]`, validated.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// Application name used in every manifest.
    pub app: String,
    /// `None`: the target's default (`<app>:latest`, `registry.fly.io/<app>:latest`).
    pub image: Option<String>,
    /// Public host name (Ingress, domain mapping).
    pub domain: Option<String>,
}

/// The scaling keys of a pool: bounds outside and during business hours, idle shutdown.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSchedule {
    /// Fewest workers outside business hours.
    pub min_workers: u32,
    /// Most workers outside business hours.
    pub max_workers: u32,
    /// Time without work before the desired count drops to the minimum.
    pub idle_shutdown: Duration,
    /// Never scale down.
    pub persistent: bool,
    /// Other bounds during business hours.
    pub business_hours: Option<BusinessHours>,
}

impl Default for PoolSchedule {
    fn default() -> Self {
        PoolSchedule {
            min_workers: 0,
            max_workers: 10,
            idle_shutdown: Duration::from_secs(600),
            persistent: false,
            business_hours: None,
        }
    }
}

/// `[pools.<name>.business_hours]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessHours {
    /// IANA name, as written.
    pub timezone: String,
    /// The parsed time zone.
    pub tz: chrono_tz::Tz,
    /// Monday first.
    pub days: [bool; 7],
    /// Minutes after midnight.
    pub start: u32,
    /// Minutes after midnight; before `start` means the next day.
    pub end: u32,
    /// Fewest workers in business hours.
    pub min_workers: u32,
    /// Most workers in business hours.
    pub max_workers: u32,
}

impl BusinessHours {
    /// Whether `now` falls in business hours (an overnight window belongs to the day it starts).
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.tz);
        let minute = local.hour() * 60 + local.minute();
        let weekday = local.weekday().num_days_from_monday() as usize;
        if self.start <= self.end {
            self.days[weekday] && minute >= self.start && minute < self.end
        } else {
            let yesterday = (weekday + 6) % 7;
            (self.days[weekday] && minute >= self.start)
                || (self.days[yesterday] && minute < self.end)
        }
    }

    /// The days as a cron day-of-week field (`1-5`, `1,3,5`, `*`), Sunday = 0.
    pub fn cron_days(&self) -> String {
        if self.days.iter().all(|d| *d) {
            return "*".to_owned();
        }
        // cron numbers: Sunday 0, Monday 1 … Saturday 6; ours: Monday index 0.
        let nums: Vec<u32> = (0..7)
            .filter(|i| self.days[*i])
            .map(|i| (i as u32 + 1) % 7)
            .collect();
        let mut sorted = nums.clone();
        sorted.sort_unstable();
        let contiguous = sorted.windows(2).all(|w| w[1] == w[0] + 1);
        if contiguous && sorted.len() > 2 {
            format!("{}-{}", sorted[0], sorted[sorted.len() - 1])
        } else {
            sorted
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }
    }

    /// Cron expressions (minute hour * * days) for the start and end of business hours, in
    /// `timezone` — what KEDA's cron scaler takes. An overnight window ends the next day.
    pub fn cron_start_end(&self) -> (String, String) {
        let days = self.cron_days();
        let start = format!("{} {} * * {days}", self.start % 60, self.start / 60);
        let end_days = if self.start <= self.end || days == "*" {
            days.clone()
        } else {
            let shifted: Vec<String> = (0..7)
                .filter(|i| self.days[*i])
                .map(|i| ((i as u32 + 2) % 7).to_string())
                .collect();
            shifted.join(",")
        };
        let end = format!("{} {} * * {end_days}", self.end % 60, self.end / 60);
        (start, end)
    }
}

impl PoolSchedule {
    /// `(min, max, in business hours)` at `now`.
    pub fn bounds_at(&self, now: DateTime<Utc>) -> (u32, u32, bool) {
        match &self.business_hours {
            Some(b) if b.contains(now) => (b.min_workers, b.max_workers, true),
            _ => (self.min_workers, self.max_workers, false),
        }
    }

    /// The number of workers the pool should have at `now`: enough for the work (`queued +
    /// running` runs, `concurrency` per worker) within the bounds of the hour; one kept warm
    /// until `idle_shutdown` has passed since the last work; always the maximum if persistent.
    pub fn desired(
        &self,
        now: DateTime<Utc>,
        work: u64,
        concurrency: u32,
        idle_for: Option<Duration>,
    ) -> u32 {
        let (min, max, _) = self.bounds_at(now);
        if self.persistent {
            return max;
        }
        let needed = work.div_ceil(u64::from(concurrency.max(1)));
        let mut want = u32::try_from(needed).unwrap_or(u32::MAX);
        if want == 0 {
            // Idle: keep one worker until the idle shutdown, then drop to the minimum.
            let recently_busy = idle_for.is_some_and(|idle| idle < self.idle_shutdown);
            if recently_busy {
                want = 1;
            }
        }
        want.clamp(min, max)
    }
}

pub(crate) fn regions(
    raw: &RawRegions,
    self_region: Option<&str>,
    env: Env<'_>,
    sink: &mut Sink<'_>,
) -> RegionsConfig {
    let p = KeyPath::root().key("regions");
    let mut list = Vec::new();
    for (i, code) in raw.list.iter().flatten().enumerate() {
        let code = code.trim().to_ascii_lowercase();
        if region_by_code(&code).is_none() {
            sink.error(
                &p.key("list").index(i),
                format!("unknown region code \"{code}\""),
                region_codes_hint(),
            );
        } else if list.contains(&code) {
            sink.error(
                &p.key("list").index(i),
                format!("region \"{code}\" is listed twice"),
                "list each region once",
            );
        } else {
            list.push(code);
        }
    }
    let primary = match raw.primary.as_deref().map(str::trim) {
        Some(code) if !code.is_empty() => {
            let code = code.to_ascii_lowercase();
            if region_by_code(&code).is_none() {
                sink.error(
                    &p.key("primary"),
                    format!("unknown region code \"{code}\""),
                    region_codes_hint(),
                );
                None
            } else if !list.contains(&code) {
                sink.error(
                    &p.key("primary"),
                    format!("the primary region \"{code}\" is not in regions.list"),
                    format!("add \"{code}\" to regions.list, or name one of its regions"),
                );
                None
            } else {
                Some(code)
            }
        }
        _ => list.first().cloned(),
    };
    let routing = match raw.routing.as_deref() {
        Some("fly-replay") => RegionRouting::FlyReplay,
        Some("forward") => RegionRouting::Forward,
        None => {
            if env("FLY_APP_NAME").is_some_and(|v| !v.is_empty()) {
                RegionRouting::FlyReplay
            } else {
                RegionRouting::Forward
            }
        }
        Some(other) => {
            sink.error(
                &p.key("routing"),
                format!("invalid routing \"{other}\""),
                "use one of: fly-replay, forward",
            );
            RegionRouting::Forward
        }
    };
    let read_your_writes = non_negative_ms(
        sink,
        &p.key("read_your_writes_ms"),
        raw.read_your_writes_ms,
        Duration::from_secs(5),
    );
    let mut urls = Vec::new();
    for (code, value) in raw.urls.iter().flatten() {
        let path = p.key("urls").key(code);
        if !list.iter().any(|r| r == code) {
            sink.error(
                &path,
                format!("\"{code}\" has a URL but is not in regions.list"),
                "add it to regions.list or remove this URL",
            );
            continue;
        }
        let Some(url) = sink.expand(&path, value, env) else {
            continue;
        };
        let url = url.trim().trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            sink.error(
                &path,
                format!("\"{url}\" is not an http(s) URL"),
                "write the region's base URL, such as \"http://nrt.internal:8080\"",
            );
            continue;
        }
        urls.push((code.clone(), Secret::new(url)));
    }
    if list.len() > 1 {
        match self_region {
            None => sink.error(
                &p.key("list"),
                "several regions are listed but this instance's region is unknown",
                "set server.region (or FLY_REGION) to one of regions.list",
            ),
            Some(me) if !list.iter().any(|r| r == me) => sink.error(
                &KeyPath::root().key("server").key("region"),
                format!("this instance's region \"{me}\" is not in regions.list"),
                format!("add \"{me}\" to regions.list, or run this instance in one of its regions"),
            ),
            Some(me) => {
                if routing == RegionRouting::Forward {
                    let missing: Vec<&str> = list
                        .iter()
                        .filter(|r| *r != me && !urls.iter().any(|(c, _)| c == *r))
                        .map(String::as_str)
                        .collect();
                    if !missing.is_empty() {
                        sink.error(
                            &p.key("urls"),
                            format!(
                                "routing is \"forward\" but these regions have no URL: {}",
                                missing.join(", ")
                            ),
                            "add [regions.urls] entries such as nrt = \"http://nrt.internal:8080\", or use routing = \"fly-replay\" on Fly.io",
                        );
                    }
                }
            }
        }
    }
    let mut store_urls = Vec::new();
    for (code, value) in raw.store_urls.iter().flatten() {
        let path = p.key("store_urls").key(code);
        if !list.iter().any(|r| r == code) {
            sink.error(
                &path,
                format!("\"{code}\" has a database but is not in regions.list"),
                "add it to regions.list or remove this entry",
            );
            continue;
        }
        let Some(url) = sink.expand(&path, value, env) else {
            continue;
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            let scheme = url.split_once("://").map_or("(none)", |(s, _)| s);
            sink.error(
                &path,
                format!("a region's database must be PostgreSQL: the URL must start with postgres:// (scheme is \"{scheme}\")"),
                "use a URL like postgres://user:password@nrt-db:5432/agentd",
            );
            continue;
        }
        store_urls.push((code.clone(), Secret::new(url)));
    }
    RegionsConfig {
        list,
        primary,
        routing,
        read_your_writes,
        urls,
        store_urls,
    }
}

pub(crate) fn deploy(raw: &RawDeploy, sink: &mut Sink<'_>) -> DeployConfig {
    let p = KeyPath::root().key("deploy");
    let app = match raw.app.as_deref() {
        None => "agentd".to_owned(),
        Some(app) if is_app_name(app) => app.to_owned(),
        Some(app) => {
            sink.error(
                &p.key("app"),
                format!("invalid app name \"{app}\""),
                "use 1 to 40 characters a-z, 0-9 and '-', starting with a letter (Kubernetes and Fly.io names)",
            );
            "agentd".to_owned()
        }
    };
    let image = raw
        .image
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if let Some(image) = &image {
        if image.chars().any(|c| c.is_whitespace()) {
            sink.error(
                &p.key("image"),
                format!("invalid image reference \"{image}\""),
                "write an image reference such as \"ghcr.io/acme/agentd:1.0\"",
            );
        }
    }
    let domain = raw
        .domain
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if let Some(d) = &domain {
        let ok = d.len() <= 253
            && d.split('.').all(|label| {
                (1..=63).contains(&label.len())
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            sink.error(
                &p.key("domain"),
                format!("invalid host name \"{d}\""),
                "write a lower-case DNS name such as \"agents.example.com\"",
            );
        }
    }
    DeployConfig { app, image, domain }
}

fn is_app_name(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub(crate) fn pool_schedule(sink: &mut Sink<'_>, p: &KeyPath, raw: &RawPool) -> PoolSchedule {
    let d = PoolSchedule::default();
    let min_workers = count(sink, &p.key("min_workers"), raw.min_workers, d.min_workers);
    let mut max_workers = count(sink, &p.key("max_workers"), raw.max_workers, d.max_workers);
    if raw.max_workers.is_none() {
        max_workers = max_workers.max(min_workers).max(1);
    }
    bounds_ok(sink, p, min_workers, max_workers);
    let idle_shutdown = non_negative_ms(
        sink,
        &p.key("idle_shutdown_ms"),
        raw.idle_shutdown_ms,
        d.idle_shutdown,
    );
    let business_hours = raw
        .business_hours
        .as_ref()
        .and_then(|b| business_hours(sink, &p.key("business_hours"), b, min_workers, max_workers));
    PoolSchedule {
        min_workers,
        max_workers,
        idle_shutdown,
        persistent: raw.persistent.unwrap_or(false),
        business_hours,
    }
}

fn count(sink: &mut Sink<'_>, path: &KeyPath, raw: Option<i64>, default: u32) -> u32 {
    match raw {
        None => default,
        Some(n) if (0..=10_000).contains(&n) => n as u32,
        Some(n) => {
            sink.error(
                path,
                format!("must be between 0 and 10000 (got {n})"),
                format!("use a whole number such as {default}"),
            );
            default
        }
    }
}

fn bounds_ok(sink: &mut Sink<'_>, p: &KeyPath, min: u32, max: u32) {
    if max == 0 {
        sink.error(
            &p.key("max_workers"),
            "max_workers must be at least 1",
            "a pool with no workers never runs anything; use min_workers = 0 to scale to zero",
        );
    } else if min > max {
        sink.error(
            &p.key("min_workers"),
            format!("min_workers ({min}) is greater than max_workers ({max})"),
            "raise max_workers or lower min_workers",
        );
    }
}

fn business_hours(
    sink: &mut Sink<'_>,
    p: &KeyPath,
    raw: &RawBusinessHours,
    pool_min: u32,
    pool_max: u32,
) -> Option<BusinessHours> {
    let mut ok = true;
    let timezone = raw.timezone.as_deref().map(str::trim).unwrap_or_default();
    let tz = if timezone.is_empty() {
        sink.error(
            &p.key("timezone"),
            "business_hours needs a timezone",
            "add timezone = \"Europe/Paris\" (an IANA time zone name)",
        );
        None
    } else {
        match timezone.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                sink.error(
                    &p.key("timezone"),
                    format!("unknown time zone \"{timezone}\""),
                    "use an IANA time zone name such as \"Europe/Paris\" or \"America/Los_Angeles\"",
                );
                None
            }
        }
    };
    let days = match parse_days(raw.days.as_deref().unwrap_or("mon-fri")) {
        Ok(days) => days,
        Err(message) => {
            sink.error(
                &p.key("days"),
                message,
                "write a range such as \"mon-fri\", \"mon-sun\", or a list such as \"mon,wed,fri\"",
            );
            ok = false;
            [false; 7]
        }
    };
    let mut time = |key: &str, value: Option<&str>| -> Option<u32> {
        match value.map(parse_hhmm) {
            None => {
                sink.error(
                    &p.key(key),
                    format!("business_hours needs {key}"),
                    format!("add {key} = \"09:00\" (HH:MM, 24 h)"),
                );
                None
            }
            Some(Some(m)) => Some(m),
            Some(None) => {
                sink.error(
                    &p.key(key),
                    format!("invalid time \"{}\"", value.unwrap_or_default()),
                    "write HH:MM on a 24-hour clock, such as \"09:00\" or \"18:30\"",
                );
                None
            }
        }
    };
    let start = time("start", raw.start.as_deref());
    let end = time("end", raw.end.as_deref());
    if let (Some(s), Some(e)) = (start, end) {
        if s == e {
            sink.error(
                &p.key("end"),
                "business hours start and end at the same time",
                "give a window such as start = \"09:00\", end = \"18:00\"",
            );
            ok = false;
        }
    }
    let min_workers = count(sink, &p.key("min_workers"), raw.min_workers, pool_min);
    let mut max_workers = count(sink, &p.key("max_workers"), raw.max_workers, pool_max);
    if raw.max_workers.is_none() {
        max_workers = max_workers.max(min_workers).max(1);
    }
    bounds_ok(sink, p, min_workers, max_workers);
    Some(BusinessHours {
        timezone: timezone.to_owned(),
        tz: tz?,
        days,
        start: start?,
        end: end?,
        min_workers,
        max_workers,
    })
    .filter(|_| ok)
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_days(spec: &str) -> Result<[bool; 7], String> {
    let day = |s: &str| {
        let s = s.trim().to_ascii_lowercase();
        DAY_NAMES
            .iter()
            .position(|d| s.starts_with(d) && s.len() >= 3)
            .ok_or_else(|| format!("unknown day \"{s}\" in days \"{spec}\""))
    };
    let mut days = [false; 7];
    for part in spec.split(',') {
        if part.trim().is_empty() {
            return Err(format!("empty day in days \"{spec}\""));
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut i = a;
                loop {
                    days[i] = true;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => days[day(part)?] = true,
        }
    }
    Ok(days)
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    // 24:00 is the end of the day.
    if (h < 24 && m < 60) || (h == 24 && m == 0) {
        Some(h * 60 + m)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn hours(start: &str, end: &str, days: &str) -> BusinessHours {
        BusinessHours {
            timezone: "America/Los_Angeles".into(),
            tz: chrono_tz::America::Los_Angeles,
            days: parse_days(days).unwrap(),
            start: parse_hhmm(start).unwrap(),
            end: parse_hhmm(end).unwrap(),
            min_workers: 2,
            max_workers: 10,
        }
    }

    #[test]
    fn business_hours_follow_the_time_zone_and_days() {
        let b = hours("09:00", "18:00", "mon-fri");
        // Friday 2026-12-04 17:30 UTC = 09:30 in Los Angeles (PST, UTC-8).
        assert!(b.contains(Utc.with_ymd_and_hms(2026, 12, 4, 17, 30, 0).unwrap()));
        // 16:59 UTC = 08:59 local: not yet.
        assert!(!b.contains(Utc.with_ymd_and_hms(2026, 12, 4, 16, 59, 0).unwrap()));
        // Saturday 2026-12-05 18:00 UTC = 10:00 local on a Saturday.
        assert!(!b.contains(Utc.with_ymd_and_hms(2026, 12, 5, 18, 0, 0).unwrap()));
        assert_eq!(
            b.cron_start_end(),
            ("0 9 * * 1-5".into(), "0 18 * * 1-5".into())
        );
    }

    #[test]
    fn overnight_windows_end_the_next_day() {
        let b = hours("22:00", "06:00", "fri");
        // Saturday 05:00 local belongs to Friday's window: 13:00 UTC.
        assert!(b.contains(Utc.with_ymd_and_hms(2026, 12, 5, 13, 0, 0).unwrap()));
        // Friday 05:00 local belongs to Thursday's (not a business day).
        assert!(!b.contains(Utc.with_ymd_and_hms(2026, 12, 4, 13, 0, 0).unwrap()));
        assert_eq!(
            b.cron_start_end(),
            ("0 22 * * 5".into(), "0 6 * * 6".into())
        );
    }

    #[test]
    fn days_parse_ranges_lists_and_wrap() {
        assert_eq!(
            parse_days("mon-fri").unwrap(),
            [true, true, true, true, true, false, false]
        );
        assert_eq!(
            parse_days("sat-mon").unwrap(),
            [true, false, false, false, false, true, true]
        );
        assert_eq!(
            parse_days("mon,wed").unwrap(),
            [true, false, true, false, false, false, false]
        );
        assert!(parse_days("funday").is_err());
        assert_eq!(hours("09:00", "17:00", "mon-sun").cron_days(), "*");
        assert_eq!(hours("09:00", "17:00", "sat-sun").cron_days(), "0,6");
        assert_eq!(parse_hhmm("9:05"), Some(545));
        assert_eq!(parse_hhmm("25:00"), None);
        assert_eq!(parse_hhmm("12:7"), None);
    }

    #[test]
    fn desired_workers_follow_work_hours_idle_and_persistence() {
        let b = hours("09:00", "18:00", "mon-fri");
        let s = PoolSchedule {
            min_workers: 0,
            max_workers: 3,
            idle_shutdown: Duration::from_secs(600),
            persistent: false,
            business_hours: Some(b),
        };
        let business = Utc.with_ymd_and_hms(2026, 12, 4, 18, 0, 0).unwrap();
        let night = Utc.with_ymd_and_hms(2026, 12, 5, 8, 0, 0).unwrap();
        // Business hours: at least 2, work for 7 workers of 2 slots → 7 capped at 10.
        assert_eq!(s.desired(business, 0, 2, None), 2);
        assert_eq!(s.desired(business, 13, 2, None), 7);
        assert_eq!(s.desired(business, 100, 2, None), 10);
        // Off hours: scale to zero once idle long enough, one warm until then, max 3.
        assert_eq!(s.desired(night, 0, 2, None), 0);
        assert_eq!(s.desired(night, 0, 2, Some(Duration::from_secs(60))), 1);
        assert_eq!(s.desired(night, 0, 2, Some(Duration::from_secs(601))), 0);
        assert_eq!(s.desired(night, 100, 2, None), 3);
        let persistent = PoolSchedule {
            persistent: true,
            ..s.clone()
        };
        assert_eq!(persistent.desired(night, 0, 2, None), 3);
        assert_eq!(persistent.desired(business, 0, 2, None), 10);
    }
}
