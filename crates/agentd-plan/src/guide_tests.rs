//! The built-in prices against the guide: its cost table at three scale points, its phase plan,
//! its migration threshold and its verdicts; plus the prices file's error reporting.

use super::*;
use crate::model::guide_step;

const FOUR: [&str; 4] = ["cdg", "nrt", "sjc", "ewr"];

/// "Within the rounding the guide uses": the guide writes ~$10 steps under $300 ("$160",
/// "$620"), ~$50 steps under $1,000 ("$400", "$800") and ~$100 steps above ("$1,500",
/// "$2,500"), so an estimate matches a figure when it rounds to it at that step, i.e. lies
/// within half a step. ("$620" is within $25 of a $50 step: 595-645.) "$5,000+" means >= $5,000.
#[derive(Debug, Clone, Copy)]
enum Guide {
    About(f64),
    AtLeast(f64),
    NotAvailable,
}

fn matches_guide(estimate: Option<f64>, figure: Guide) -> bool {
    match (estimate, figure) {
        (Some(e), Guide::About(f)) => (e - f).abs() <= guide_step(f) / 2.0,
        (Some(e), Guide::AtLeast(f)) => e >= f,
        (None, Guide::NotAvailable) => true,
        (None, Guide::About(_) | Guide::AtLeast(_)) | (Some(_), Guide::NotAvailable) => false,
    }
}

/// The guide's "Cost Comparison Summary" for Paris + Tokyo + SF + NYC. Render's "/region"
/// figures are 4 x its own $40/region breakdown at the small point, so they are totals.
/// (scale point, requests/day, database GB, the guide's figure per platform).
type CostTable = Vec<(&'static str, u64, f64, Vec<(&'static str, Guide)>)>;

fn cost_table() -> CostTable {
    use Guide::{About, AtLeast, NotAvailable};
    vec![
        (
            "small",
            10_000,
            2.0,
            vec![
                ("fly", About(200.0)),
                ("gke-autopilot", About(620.0)),
                ("eks", About(1000.0)),
                ("railway", NotAvailable),
                ("render", About(160.0)),
                ("cloud-run", About(400.0)),
                ("cloudflare-workers", About(10.0)),
            ],
        ),
        (
            "medium",
            100_000,
            20.0,
            vec![
                ("fly", About(500.0)),
                ("gke-autopilot", About(1500.0)),
                ("eks", About(2500.0)),
                ("railway", NotAvailable),
                ("render", About(400.0)),
                ("cloud-run", About(800.0)),
                ("cloudflare-workers", About(50.0)),
            ],
        ),
        (
            "large",
            1_000_000,
            100.0,
            vec![
                ("fly", About(2000.0)),
                ("gke-autopilot", AtLeast(5000.0)),
                ("eks", AtLeast(8000.0)),
                ("railway", NotAvailable),
                ("render", About(1200.0)),
                ("cloud-run", About(2000.0)),
                ("cloudflare-workers", About(200.0)),
            ],
        ),
    ]
}

fn run(regions: &[&str], requests_per_day: u64, db_gb: f64) -> Plan {
    plan(
        &Prices::builtin(),
        &Workload::new(requests_per_day, regions, db_gb),
    )
    .unwrap()
}

fn platform<'a>(plan: &'a Plan, id: &str) -> &'a PlatformPlan {
    plan.platforms.iter().find(|p| p.id == id).unwrap()
}

fn latency<'a>(p: &'a PlatformPlan, code: &str) -> &'a CityLatency {
    p.latency.iter().find(|l| l.code == code).unwrap()
}

#[test]
fn three_scale_points_reproduce_the_guides_cost_table() {
    let mut misses = Vec::new();
    for (point, rpd, gb, figures) in cost_table() {
        let plan = run(&FOUR, rpd, gb);
        assert_eq!(plan.prices.date, "2025-11-11");
        for (id, figure) in figures {
            let estimate = platform(&plan, id).monthly_usd;
            if !matches_guide(estimate, figure) {
                misses.push(format!("{point} {id}: ours {estimate:?}, guide {figure:?}"));
            }
        }
    }
    assert!(
        misses.is_empty(),
        "off the guide's table:\n{}",
        misses.join("\n")
    );
}

#[test]
fn the_guide_column_of_the_output_is_the_guides_table() {
    for (point, rpd, gb, figures) in cost_table() {
        let plan = run(&FOUR, rpd, gb);
        assert_eq!(
            plan.guide_scale_point
                .as_deref()
                .map(str::to_lowercase)
                .as_deref(),
            Some(point)
        );
        for (id, figure) in figures {
            let shown = platform(&plan, id).guide;
            let same = match (shown, figure) {
                (Some(GuideFigure::About { monthly_usd: a }), Guide::About(b))
                | (Some(GuideFigure::AtLeast { monthly_usd: a }), Guide::AtLeast(b)) => a == b,
                (Some(GuideFigure::NotAvailable), Guide::NotAvailable) => true,
                _ => false,
            };
            assert!(same, "{point} {id}: file has {shown:?}, guide {figure:?}");
        }
    }
    // Not a scale point: no column.
    assert!(run(&FOUR, 20_000, 2.0).guide_scale_point.is_none());
}

#[test]
fn render_reports_the_total_and_the_per_region_figure() {
    // Render has no Tokyo region: four deployments, Tokyo served from Singapore.
    for (rpd, gb, total, per_region) in [
        (10_000, 2.0, 160.0, 40.0),
        (100_000, 20.0, 400.0, 100.0),
        (1_000_000, 100.0, 1200.0, 300.0),
    ] {
        let plan = run(&FOUR, rpd, gb);
        let render = platform(&plan, "render");
        assert_eq!(render.deployments.len(), 4);
        assert!(matches_guide(render.monthly_usd, Guide::About(total)));
        assert!(matches_guide(
            render.per_deployment_usd,
            Guide::About(per_region)
        ));
        assert_eq!(latency(render, "nrt").served_from, "sin");
    }
}

#[test]
fn bare_vms_reproduce_the_guides_paris_and_three_region_figures() {
    // "Paris (development): Subtotal: ~$300/mo"; "Scale to 3 regions: ~$900/mo".
    let paris = run(&["cdg"], 10_000, 2.0);
    assert!(matches_guide(
        platform(&paris, "vms").monthly_usd,
        Guide::About(300.0)
    ));
    let four = run(&FOUR, 10_000, 2.0);
    let vms = platform(&four, "vms");
    assert_eq!(
        vms.deployments.len(),
        3,
        "one per continent: SF and NYC share one"
    );
    assert!(matches_guide(vms.monthly_usd, Guide::About(900.0)));
}

/// The guide's phase plan: Paris ($50) → + Tokyo ($100) → global ($200) on Fly.io, with its
/// latency per city. Our ranges are the round trip from the table plus the guide's
/// 10-20 ms in region; where that table disagrees with the guide's range the test pins ours and
/// says so.
#[test]
fn phase_plan_reproduces_the_guides_cost_and_latency_trajectory() {
    use LatencyClass::{Acceptable, InCity, TooSlow};
    struct City {
        code: &'static str,
        ours: (f64, f64),
        guide: (f64, f64),
        class: LatencyClass,
        /// Why ours is outside the guide's range, if it is.
        deviation: Option<&'static str>,
    }
    let phases = [
        (
            vec!["cdg"],
            50.0,
            vec![
                City { code: "cdg", ours: (10.0, 20.0), guide: (10.0, 20.0), class: InCity, deviation: None },
                City {
                    code: "ewr",
                    ours: (85.0, 95.0),
                    guide: (100.0, 120.0),
                    class: Acceptable,
                    deviation: Some("Paris-NYC is 75 ms in the issue's table; the guide's 100-120 implies ~90-100"),
                },
                // guide: "200-300ms ❌ Too slow for Tokyo users"
                City { code: "nrt", ours: (230.0, 240.0), guide: (200.0, 300.0), class: TooSlow, deviation: None },
            ],
        ),
        (
            vec!["cdg", "nrt"],
            100.0,
            vec![
                City { code: "cdg", ours: (10.0, 20.0), guide: (10.0, 20.0), class: InCity, deviation: None },
                City { code: "nrt", ours: (10.0, 20.0), guide: (10.0, 20.0), class: InCity, deviation: None },
                // guide: "100-120ms ⚠️ Acceptable"
                City {
                    code: "ewr",
                    ours: (85.0, 95.0),
                    guide: (100.0, 120.0),
                    class: Acceptable,
                    deviation: Some("Paris-NYC is 75 ms in the issue's table"),
                },
                // guide: "80-100ms ⚠️ Acceptable"
                City {
                    code: "sjc",
                    ours: (115.0, 125.0),
                    guide: (80.0, 100.0),
                    class: Acceptable,
                    deviation: Some("Tokyo-SF is 105 ms in the issue's table, more than the guide's whole range"),
                },
            ],
        ),
        (
            FOUR.to_vec(),
            200.0,
            // guide: "Latency: <50ms everywhere ✅"
            FOUR.iter()
                .map(|&code| City { code, ours: (10.0, 20.0), guide: (0.0, 50.0), class: InCity, deviation: None })
                .collect(),
        ),
    ];
    let prices = Prices::builtin();
    let plans = plan_phases(&prices, &Workload::new(10_000, &[], 2.0)).unwrap();
    assert_eq!(plans.len(), phases.len());
    for ((regions, cost, cities), plan) in phases.iter().zip(&plans) {
        assert_eq!(&plan.workload.regions, regions);
        let fly = platform(plan, "fly");
        assert!(
            matches_guide(fly.monthly_usd, Guide::About(*cost)),
            "{regions:?}: Fly.io {:?}, guide ${cost}",
            fly.monthly_usd
        );
        assert_eq!(
            plan.recommendation.as_ref().unwrap().platform,
            "fly",
            "{regions:?}"
        );
        let phase = plan.guide_phase.as_ref().unwrap();
        assert_eq!(phase.monthly_usd, *cost);
        for c in cities {
            let l = latency(fly, c.code);
            assert_eq!((l.low_ms, l.high_ms), c.ours, "{regions:?} {}", c.code);
            assert_eq!(
                l.class, c.class,
                "{regions:?} {}: the guide's verdict",
                c.code
            );
            assert!(
                !l.estimated,
                "{}: the four cities have measured round trips",
                c.code
            );
            let g = phase.latency.iter().find(|g| g.code == c.code).unwrap();
            assert_eq!(
                (g.low_ms, g.high_ms),
                c.guide,
                "the prices file carries the guide's range"
            );
            let inside = c.guide.0 <= l.low_ms && l.high_ms <= c.guide.1;
            assert_eq!(
                inside,
                c.deviation.is_none(),
                "{regions:?} {}: {:?}",
                c.code,
                c.deviation
            );
        }
    }
    // The trajectory itself: 50 → 100 → 200.
    let costs: Vec<f64> = plans
        .iter()
        .map(|p| platform(p, "fly").monthly_usd.unwrap())
        .collect();
    assert_eq!(costs, [50.0, 100.0, 200.0]);
    let text = render_phases(&plans);
    assert!(text.contains("Paris + Tokyo"), "{text}");
    assert!(text.contains("Fly.io $100 ($100)"), "{text}");
}

#[test]
fn migration_threshold_is_reported_when_crossed() {
    let medium = run(&FOUR, 100_000, 20.0);
    assert!(medium.migration.is_none());
    let large = run(&FOUR, 1_000_000, 100.0);
    let m = large
        .migration
        .as_ref()
        .expect("~$2,000 on Fly.io reaches the threshold");
    assert_eq!((m.from.as_str(), m.to.as_str()), ("fly", "gke-autopilot"));
    assert_eq!(m.threshold_usd, 2000.0);
    assert!(
        m.message
            .contains("over the guide's ~$2,000/month threshold"),
        "{}",
        m.message
    );
    assert!(
        m.message.contains("consider Kubernetes (GKE Autopilot)"),
        "{}",
        m.message
    );
    assert!(render_text(&large).contains("Migration: Fly.io at ~$2,"));
    // Well over it.
    let bigger = run(&FOUR, 3_000_000, 100.0);
    assert!(bigger.migration.unwrap().from_monthly_usd > 2500.0);
    // One region at the large volume stays under it.
    assert!(run(&["cdg"], 1_000_000, 100.0).migration.is_none());
}

#[test]
fn railway_is_not_available_outside_the_us_and_priced_inside() {
    let global = run(&FOUR, 10_000, 2.0);
    let railway = platform(&global, "railway");
    assert_eq!(
        railway.monthly_usd, None,
        "never a price where it cannot run"
    );
    match &railway.verdict {
        Verdict::NotAvailable { reason } => {
            assert!(reason.contains("US only"), "{reason}");
            assert!(reason.contains("cdg, nrt"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let us = run(&["sjc", "ewr"], 10_000, 2.0);
    let railway = platform(&us, "railway");
    // guide: "~$20/mo for small app + $10/mo for Postgres = $30/mo", one region.
    assert_eq!(railway.monthly_usd, Some(30.0));
    assert_eq!(railway.deployments.len(), 1);
    assert!(matches!(
        railway.verdict,
        Verdict::Eligible | Verdict::Recommended
    ));
}

#[test]
fn cloudflare_workers_is_priced_but_unsuitable_for_long_running_agents() {
    let plan = run(&FOUR, 100_000, 20.0);
    let cf = platform(&plan, "cloudflare-workers");
    assert!(cf.monthly_usd.is_some());
    match &cf.verdict {
        Verdict::Unsuitable { reasons } => {
            assert!(
                reasons[0].contains("cannot hold a long-running agent"),
                "{reasons:?}"
            );
            assert!(reasons[0].contains("30 s"), "{reasons:?}");
        }
        other => panic!("{other:?}"),
    }
    // The gateway alone needs neither: then the edge wins on latency and cost.
    let mut gateway = Workload::new(100_000, &FOUR, 20.0);
    gateway.needs = Needs {
        long_running: false,
        websockets: false,
        residency: false,
    };
    let plan = crate::plan(&Prices::builtin(), &gateway).unwrap();
    assert_eq!(plan.recommendation.unwrap().platform, "cloudflare-workers");
}

#[test]
fn residency_excludes_platforms_that_cannot_keep_data_in_an_area() {
    let mut w = Workload::new(10_000, &["sjc", "ewr"], 2.0);
    w.needs.residency = true;
    let plan = plan(&Prices::builtin(), &w).unwrap();
    assert!(matches!(
        platform(&plan, "railway").verdict,
        Verdict::Unsuitable { .. }
    ));
    assert!(matches!(
        platform(&plan, "fly").verdict,
        Verdict::Recommended
    ));
}

#[test]
fn the_recommendation_follows_latency_then_cost_then_effort() {
    // Cities where Render has its own regions: both in city, Render 20% cheaper → Render.
    let plan = run(&["fra", "sin"], 10_000, 2.0);
    let rec = plan.recommendation.as_ref().unwrap();
    assert_eq!(rec.platform, "render", "{}", rec.why);
    assert!(rec.why.contains("cheapest"), "{}", rec.why);

    // Paris only: Render serves it from Frankfurt, so Fly.io (in the city) wins although
    // Render is cheaper.
    let plan = run(&["cdg"], 10_000, 2.0);
    assert_eq!(plan.recommendation.as_ref().unwrap().platform, "fly");
    assert_eq!(latency(platform(&plan, "render"), "cdg").served_from, "fra");

    // Within the 10% tie margin the platform with less effort wins: Render at $48 vs Fly.io $50.
    let text = BUILTIN_PRICES.replace(
        "monthly = 25            # guide: \"~$25/mo for app\"",
        "monthly = 33",
    );
    assert_ne!(text, BUILTIN_PRICES);
    let prices = Prices::parse(&text, "test").unwrap();
    let plan = crate::plan(&prices, &Workload::new(10_000, &["fra", "sin"], 2.0)).unwrap();
    let rec = plan.recommendation.unwrap();
    assert_eq!(rec.platform, "fly", "{}", rec.why);
    assert!(rec.why.contains("less operational effort"), "{}", rec.why);
    assert_eq!(
        plan.platforms[0].id, "fly",
        "the recommended platform is listed first"
    );
}

#[test]
fn gpu_hours_add_the_lambda_labs_rate_to_every_platform() {
    let mut w = Workload::new(10_000, &FOUR, 2.0);
    w.gpu_hours_per_month = 100.0;
    let plan = plan(&Prices::builtin(), &w).unwrap();
    let fly = platform(&plan, "fly");
    assert_eq!(fly.monthly_usd, Some(400.0), "$200 + 100 h x $2.00");
    assert_eq!(
        fly.per_deployment_usd,
        Some(50.0),
        "GPU hours are not per deployment"
    );
    assert!(fly.cost.iter().any(|l| l.item.contains("Lambda Labs")));
    assert!(
        plan.guide_scale_point.is_none(),
        "the guide's table has no GPU"
    );
}

#[test]
fn unknown_region_code_names_the_value_and_lists_the_valid_codes() {
    let err = plan(
        &Prices::builtin(),
        &Workload::new(10_000, &["cdg", "xyz"], 2.0),
    )
    .unwrap_err();
    match &err {
        PlanError::UnknownRegion { code, valid } => {
            assert_eq!(code, "xyz");
            assert!(valid.iter().any(|c| c == "nrt"));
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("`xyz`") && message.contains("cdg, cmh"),
        "{message}"
    );
    assert!(matches!(
        plan(&Prices::builtin(), &Workload::new(10_000, &[], 2.0)),
        Err(PlanError::NoRegions)
    ));
    // Codes are case-insensitive and de-duplicated.
    let plan = run(&["CDG", "cdg", " nrt "], 10_000, 2.0);
    assert_eq!(plan.workload.regions, ["cdg", "nrt"]);
}

#[test]
fn an_edited_prices_file_changes_the_result() {
    let text = BUILTIN_PRICES.replace(
        "monthly = 23            # guide",
        "monthly = 46            # twice the guide's",
    );
    assert_ne!(text, BUILTIN_PRICES);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.toml");
    std::fs::write(&path, text).unwrap();
    let prices = Prices::from_file(&path).unwrap();
    assert_eq!(prices.origin(), path.display().to_string());
    let plan = plan(&prices, &Workload::new(10_000, &FOUR, 2.0)).unwrap();
    // 4 x $46 + 4 x $15 + 4 x $12.
    assert_eq!(platform(&plan, "fly").monthly_usd, Some(292.0));
    assert!(render_text(&plan).contains(&path.display().to_string()));
}

fn price_errors(text: &str) -> Vec<PriceError> {
    match Prices::parse(text, "prices.toml") {
        Err(PlanError::Prices(PriceErrors(errors))) => errors,
        other => panic!("{:?}", other.map(|_| ())),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn an_unknown_key_is_reported_with_file_line_and_key() {
    let text = BUILTIN_PRICES.replace(
        "requests_per_day = 30_000\n",
        "requests_per_day = 30_000\ncolour = \"red\"\n",
    );
    let errors = price_errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.line, Some(line_of(&text, "colour = ")));
    assert_eq!(e.key, "platforms.fly.app.colour");
    assert!(
        e.message.contains("unknown field `colour`"),
        "{}",
        e.message
    );
    assert!(
        e.to_string().starts_with(&format!(
            "prices.toml:{}: platforms.fly.app.colour: unknown field",
            e.line.unwrap()
        )),
        "{e}"
    );
}

#[test]
fn a_missing_platform_field_is_reported_with_its_table() {
    let text = BUILTIN_PRICES.replacen("effort = 1\n", "", 1);
    let errors = price_errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.key, "platforms.fly.effort");
    assert!(
        e.message.contains("missing field `effort`"),
        "{}",
        e.message
    );
    assert_eq!(e.line, Some(line_of(&text, "[platforms.fly]")));
}

#[test]
fn validation_collects_every_error_with_its_key() {
    let text = BUILTIN_PRICES
        .replace("monthly = 15            # guide", "monthly = -15")
        .replacen("\"cdg\", \"dfw\"", "\"cdg\", \"zzz\"", 1)
        .replace("cdg-nrt = 220", "cdg-xyz = 220");
    let errors = price_errors(&text);
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"platforms.fly.locations[4]"), "{errors:#?}");
    assert!(keys.contains(&"rtt.cdg-xyz"), "{errors:#?}");
    for e in &errors {
        assert!(e.line.is_some(), "{e}");
    }
    let zzz = errors
        .iter()
        .find(|e| e.key == "platforms.fly.locations[4]")
        .unwrap();
    assert!(zzz.message.contains("unknown city `zzz`"), "{zzz}");
    assert_eq!(zzz.line, Some(line_of(&text, "\"zzz\"")));
}

#[test]
fn a_negative_price_is_rejected() {
    let text = BUILTIN_PRICES.replace(
        "monthly = 10            # guide: \"4x redis-1g",
        "monthly = -10 # \"4x redis-1g",
    );
    let errors = price_errors(&text);
    assert_eq!(
        errors[0].key, "platforms.fly.items[0].monthly",
        "{errors:?}"
    );
    assert!(errors[0].message.contains(">= 0"));
}

#[test]
fn a_syntax_error_has_a_line() {
    let text = format!("{BUILTIN_PRICES}\n[broken\n");
    let errors = price_errors(&text);
    assert_eq!(
        errors[0].line,
        Some(line_of(&text, "[broken")),
        "{errors:?}"
    );
}

#[test]
fn a_wrong_enum_value_names_the_key() {
    let text = BUILTIN_PRICES.replacen("placement = \"region\"", "placement = \"planet\"", 1);
    let errors = price_errors(&text);
    assert_eq!(errors[0].key, "platforms.fly.placement", "{errors:?}");
    assert!(errors[0].message.contains("planet"), "{errors:?}");
}

#[test]
fn text_output_has_the_table_latency_breakdown_and_recommendation() {
    let plan = run(&FOUR, 100_000, 20.0);
    let text = render_text(&plan);
    for needle in [
        "PLATFORM",
        "GUIDE",
        "Railway",
        "N/A: no region in Europe or Asia (US only)",
        "unsuitable: cannot hold a long-running agent",
        "Latency on Fly.io",
        "Cost on Fly.io:",
        "Recommendation: Fly.io.",
        "Tokyo ~",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains("Migration:"));
}

#[test]
fn json_output_carries_every_platform_with_its_status() {
    let plan = run(&FOUR, 10_000, 2.0);
    let v = serde_json::to_value(&plan).unwrap();
    let platforms = v["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 8);
    assert_eq!(platforms[0]["verdict"]["status"], "recommended");
    let railway = platforms.iter().find(|p| p["id"] == "railway").unwrap();
    assert_eq!(railway["verdict"]["status"], "not_available");
    assert!(railway["monthly_usd"].is_null());
    assert_eq!(v["recommendation"]["platform"], "fly");
    assert_eq!(v["prices"]["date"], "2025-11-11");
}
