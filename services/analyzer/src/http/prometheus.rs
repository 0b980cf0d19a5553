//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of the
//! process's counters and gauges. No label carries a tenant id here.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use crate::limits::LimitKind;

/// One metric family: its help line, type and samples.
struct Family<'a> {
    name: &'a str,
    help: &'a str,
    kind: &'a str,
    samples: Vec<(Vec<(&'a str, &'a str)>, f64)>,
}

fn render(out: &mut String, family: &Family<'_>) {
    let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
    let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
    for (labels, value) in &family.samples {
        out.push_str(family.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let escaped = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(out, "{key}=\"{escaped}\"");
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
}

/// The exposition, built from the state's counters at the time of the call.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let stats = &state.cache_stats;
    let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
    let cache_backend = state.cache.backend();
    let cache_up = state.cache.health().await.is_ok();
    let mut families = vec![
        Family {
            name: "analyzer_cache_lookups_total",
            help: "Query cache lookups (results and query embeddings) by outcome; bypass means the cache failed and was skipped.",
            kind: "counter",
            samples: vec![
                (vec![("outcome", "hit")], count(&stats.hits)),
                (vec![("outcome", "miss")], count(&stats.misses)),
                (vec![("outcome", "bypass")], count(&stats.bypassed)),
            ],
        },
        Family {
            name: "analyzer_cache_up",
            help: "Whether the query cache answers (0 while the service bypasses it).",
            kind: "gauge",
            samples: vec![(
                vec![("backend", cache_backend)],
                f64::from(u8::from(cache_up)),
            )],
        },
    ];
    let limits = &state.limiter.stats;
    families.push(Family {
        name: "analyzer_limit_refusals_total",
        help: "Requests refused with 429, by the limit that refused them.",
        kind: "counter",
        samples: vec![
            (
                vec![("kind", LimitKind::Rate.as_str())],
                count(&limits.refused_rate),
            ),
            (
                vec![("kind", LimitKind::Concurrency.as_str())],
                count(&limits.refused_concurrency),
            ),
        ],
    });
    families.push(Family {
        name: "analyzer_limit_fallbacks_total",
        help: "Limit decisions taken on this task's share because Redis was unreachable.",
        kind: "counter",
        samples: vec![(vec![], count(&limits.fallbacks))],
    });
    if let Some(current) = state.vectors.breaker_state() {
        families.push(Family {
            name: "analyzer_vector_breaker_state",
            help: "The vector store circuit breaker's state: 1 for the current one.",
            kind: "gauge",
            samples: ["closed", "half_open", "open"]
                .into_iter()
                .map(|s| (vec![("state", s)], f64::from(u8::from(s == current))))
                .collect(),
        });
    }
    let mut out = String::with_capacity(2048);
    for family in &families {
        render(&mut out, family);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_the_text_format_with_escaped_labels() {
        let mut out = String::new();
        render(
            &mut out,
            &Family {
                name: "x_total",
                help: "An example.",
                kind: "counter",
                samples: vec![(vec![("a", "q\"uo\\te"), ("b", "2")], 3.0), (vec![], 0.5)],
            },
        );
        assert_eq!(
            out,
            "# HELP x_total An example.\n# TYPE x_total counter\nx_total{a=\"q\\\"uo\\\\te\",b=\"2\"} 3\nx_total 0.5\n"
        );
    }
}
