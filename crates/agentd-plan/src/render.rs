//! The text output: a table per platform, latency per city and the cost breakdown of the
//! recommended platform, the recommendation and why, the migration note.

use std::fmt::Write as _;

use crate::model::{
    thousands, CityLatency, GuideFigure, GuidePhase, LatencyClass, Plan, PlatformPlan, Verdict,
};
use crate::prices::Placement;

fn dollars(x: f64) -> String {
    format!("${}", thousands(x))
}

fn ms(x: f64) -> String {
    format!("{x}")
}

fn range(l: &CityLatency) -> String {
    let tilde = if l.estimated { "~" } else { "" };
    format!("{tilde}{}-{} ms", ms(l.low_ms), ms(l.high_ms))
}

fn guide_range(lo: f64, hi: f64) -> String {
    if lo == 0.0 {
        format!("<{} ms", ms(hi))
    } else {
        format!("{}-{} ms", ms(lo), ms(hi))
    }
}

/// Left-aligned columns, except those listed in `right`; two spaces apart, no trailing blanks.
fn table(rows: &[Vec<String>], right: &[usize]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let pad = width[c].saturating_sub(cell.chars().count());
            if right.contains(&c) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if c + 1 < row.len() {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn deployments(p: &PlatformPlan) -> String {
    if p.placement == Placement::Edge {
        return "edge".to_owned();
    }
    let parts: Vec<String> = p
        .deployments
        .iter()
        .map(|d| {
            if d.serves.len() == 1 && d.serves[0] == d.location {
                d.location.clone()
            } else {
                format!("{}({})", d.location, d.serves.join(","))
            }
        })
        .collect();
    parts.join(" ")
}

fn slowest(p: &PlatformPlan) -> String {
    match &p.worst_latency {
        Some(l) if l.class == LatencyClass::InCity => format!("all in city, {}", range(l)),
        Some(l) => format!("{} {} ({})", l.city, range(l), l.class.label()),
        None => "-".to_owned(),
    }
}

fn notes(p: &PlatformPlan) -> String {
    let mut notes = Vec::new();
    match &p.verdict {
        Verdict::Recommended => notes.push("recommended".to_owned()),
        Verdict::Eligible => {}
        Verdict::Unsuitable { reasons } => {
            notes.push(format!("unsuitable: {}", reasons.join("; ")))
        }
        Verdict::NotAvailable { reason } => notes.push(format!("N/A: {reason}")),
    }
    if p.deployments.len() > 1 && p.placement != Placement::Edge {
        if let Some(per) = p.per_deployment_usd {
            notes.push(format!("{}/deployment", dollars(per)));
        }
    }
    notes.extend(p.caveats.iter().cloned());
    notes.join("; ")
}

/// The plan for humans: platforms, latency per city, cost breakdown, recommendation.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    let w = &plan.workload;
    let _ = writeln!(
        out,
        "agentd plan: {} requests/day, {} GB database, regions {}{}",
        thousands(w.requests_per_day as f64),
        w.db_gb,
        w.regions.join(", "),
        if w.gpu_hours_per_month > 0.0 {
            format!(", {} GPU hours/month", w.gpu_hours_per_month)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "Prices: {} ({}, {}). High availability: {} (from {} requests/day).",
        plan.prices.origin,
        plan.prices.guide,
        plan.prices.date,
        if plan.high_availability { "yes" } else { "no" },
        thousands(plan.prices.ha_from_requests_per_day as f64)
    );
    out.push('\n');

    let with_guide = plan.guide_scale_point.is_some();
    let mut header = vec!["PLATFORM".to_owned(), "MONTHLY".to_owned()];
    if with_guide {
        header.push("GUIDE".to_owned());
    }
    header.extend(["DEPLOYMENTS", "SLOWEST REQUESTED CITY", "NOTES"].map(str::to_owned));
    let mut rows = vec![header];
    for p in &plan.platforms {
        let available = !matches!(p.verdict, Verdict::NotAvailable { .. });
        let mut row = vec![
            p.name.clone(),
            p.monthly_usd.map_or_else(|| "N/A".to_owned(), dollars),
        ];
        if with_guide {
            row.push(match p.guide {
                Some(GuideFigure::About { monthly_usd }) => dollars(monthly_usd),
                Some(GuideFigure::AtLeast { monthly_usd }) => format!("{}+", dollars(monthly_usd)),
                Some(GuideFigure::NotAvailable) => "N/A".to_owned(),
                None => "-".to_owned(),
            });
        }
        row.extend([
            if available {
                deployments(p)
            } else {
                "-".to_owned()
            },
            if available {
                slowest(p)
            } else {
                "-".to_owned()
            },
            notes(p),
        ]);
        rows.push(row);
    }
    out.push_str(&table(&rows, if with_guide { &[1, 2] } else { &[1] }));

    if let Some(rec) = &plan.recommendation {
        if let Some(p) = plan.platforms.iter().find(|p| p.id == rec.platform) {
            out.push('\n');
            out.push_str(&latency_table(plan, p));
            out.push('\n');
            out.push_str(&cost_table(p));
        }
        out.push('\n');
        let _ = writeln!(out, "Recommendation: {}. {}", rec.name, rec.why);
    } else {
        out.push('\n');
        out.push_str(
            "Recommendation: none; no platform can serve these regions with this workload.\n",
        );
    }
    if let Some(m) = &plan.migration {
        let _ = writeln!(out, "Migration: {}", m.message);
    }
    if let Some(s) = &plan.guide_scale_point {
        let _ = writeln!(
            out,
            "Guide: the {} scale point of its cost table (GUIDE column; Render's figures read as four-region totals).",
            s.to_lowercase()
        );
    } else if let Some(g) = &plan.guide_phase {
        let name = plan
            .platforms
            .iter()
            .find(|p| p.id == g.platform)
            .map_or(g.platform.as_str(), |p| p.name.as_str());
        let _ = writeln!(
            out,
            "Guide: phase \"{}\" costs ~{}/month on {name}.",
            g.name,
            dollars(g.monthly_usd)
        );
    }
    for n in &plan.notes {
        let _ = writeln!(out, "Note: {n}");
    }
    out
}

fn guide_for(g: Option<&GuidePhase>, platform: &str, code: &str) -> Option<(f64, f64)> {
    let g = g.filter(|g| g.platform == platform)?;
    g.latency
        .iter()
        .find(|l| l.code == code)
        .map(|l| (l.low_ms, l.high_ms))
}

fn latency_table(plan: &Plan, p: &PlatformPlan) -> String {
    let [lo, hi] = plan.prices.in_region_ms;
    let mut out = format!(
        "Latency on {} (nearest deployment: round trip + {}-{} ms in region):\n",
        p.name,
        ms(lo),
        ms(hi)
    );
    let with_guide = plan
        .guide_phase
        .as_ref()
        .is_some_and(|g| g.platform == p.id);
    let mut header = vec![
        "CITY".to_owned(),
        "FROM".to_owned(),
        "RTT".to_owned(),
        "LATENCY".to_owned(),
        "VERDICT".to_owned(),
    ];
    if with_guide {
        header.push("GUIDE".to_owned());
    }
    let mut rows = vec![header];
    for l in &p.latency {
        let mut row = vec![
            format!(
                "{} ({}){}",
                l.city,
                l.code,
                if l.requested { "" } else { " *" }
            ),
            l.served_from.clone(),
            format!("{}{} ms", if l.estimated { "~" } else { "" }, ms(l.rtt_ms)),
            range(l),
            l.class.label().to_owned(),
        ];
        if with_guide {
            row.push(
                guide_for(plan.guide_phase.as_ref(), &p.id, &l.code)
                    .map_or_else(|| "-".to_owned(), |(a, b)| guide_range(a, b)),
            );
        }
        rows.push(row);
    }
    out.push_str(&table(&rows, &[2, 3]));
    if p.latency.iter().any(|l| !l.requested) {
        out.push_str("* not requested; shown for reference\n");
    }
    out
}

fn cost_table(p: &PlatformPlan) -> String {
    let mut out = format!("Cost on {}:\n", p.name);
    let mut rows: Vec<Vec<String>> = p
        .cost
        .iter()
        .map(|l| {
            vec![
                format!("  {}", thousands_or_fraction(l.quantity)),
                "x".to_owned(),
                l.item.clone(),
                format!("@ ${:.2}", l.unit_usd),
                dollars(l.monthly_usd),
            ]
        })
        .collect();
    rows.push(vec![
        String::new(),
        String::new(),
        "total".to_owned(),
        String::new(),
        p.monthly_usd.map_or_else(|| "N/A".to_owned(), dollars),
    ]);
    out.push_str(&table(&rows, &[0, 3, 4]));
    out
}

fn thousands_or_fraction(x: f64) -> String {
    if x.fract() == 0.0 {
        thousands(x)
    } else {
        format!("{x}")
    }
}

/// The guide's phase plan: our cost and latency per phase beside the guide's.
pub fn render_phases(plans: &[Plan]) -> String {
    let mut out = String::new();
    let Some(first) = plans.first() else {
        return out;
    };
    let w = &first.workload;
    let _ = writeln!(
        out,
        "The guide's phase plan at {} requests/day, {} GB database: ours (guide).",
        thousands(w.requests_per_day as f64),
        w.db_gb
    );
    let reference: Vec<(String, String)> = first
        .platforms
        .first()
        .map(|p| {
            p.latency
                .iter()
                .map(|l| (l.code.clone(), l.city.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut header = vec!["PHASE".to_owned(), "REGIONS".to_owned(), "COST".to_owned()];
    header.extend(reference.iter().map(|(_, city)| city.clone()));
    header.push("RECOMMENDED".to_owned());
    let mut rows = vec![header];
    for plan in plans {
        let Some(g) = &plan.guide_phase else {
            continue;
        };
        let Some(p) = plan.platforms.iter().find(|p| p.id == g.platform) else {
            continue;
        };
        let mut row = vec![
            g.name.clone(),
            plan.workload.regions.join(" "),
            format!(
                "{} {} ({})",
                p.name,
                p.monthly_usd.map_or_else(|| "N/A".to_owned(), dollars),
                dollars(g.monthly_usd)
            ),
        ];
        for (code, _) in &reference {
            let ours = p
                .latency
                .iter()
                .find(|l| &l.code == code)
                .map_or_else(|| "-".to_owned(), range);
            let guide = guide_for(Some(g), &p.id, code)
                .map_or_else(|| "-".to_owned(), |(a, b)| guide_range(a, b));
            row.push(format!("{ours} ({guide})"));
        }
        row.push(
            plan.recommendation
                .as_ref()
                .map_or_else(|| "none".to_owned(), |r| r.name.clone()),
        );
        rows.push(row);
    }
    out.push_str(&table(&rows, &[]));
    out
}
