//! `GET /metrics`: Prometheus text exposition (version 0.0.4).
//!
//! Not a DCS API endpoint: not signed, not project-scoped, not in
//! `/openapi.json`. Open by default; with `--metrics-token` it wants
//! `Authorization: Bearer TOKEN` and answers anything else with a bare
//! 401. It shows instance ids and counts, never a password, key or URL.
//!
//! A scrape is this process's counters (`crate::metrics`), two catalog
//! statements (`Catalog::waiting_jobs`, `Catalog::instance_stats`) and at
//! most `PROBES_PER_SCRAPE` reachability probes.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Shared;
use crate::metrics::{Exposition, Type, CONTENT_TYPE};
use crate::model::{now_millis, Millis, Secret};

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.http.metrics_token {
        if !bearer_matches(&headers, token) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
            )
                .into_response();
        }
    }
    let mut out = Exposition::new();
    state.jobs.metrics.encode(&mut out);
    from_catalog(&state, &mut out).await;
    (
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        out.finish(),
    )
        .into_response()
}

/// Whether the request carries `Authorization: Bearer <token>`. Both sides
/// are hashed first, so the comparison takes the same time whatever the
/// presented value's length or content.
fn bearer_matches(headers: &HeaderMap, token: &Secret) -> bool {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let presented = value.as_bytes();
    let Some(credentials) = presented
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        .map(|_| presented[7..].trim_ascii())
    else {
        return false;
    };
    let want = Sha256::digest(token.expose().as_bytes());
    let got = Sha256::digest(credentials);
    bool::from(want.ct_eq(&got))
}

fn seconds(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

/// The families read from the catalog, the same on every replica; on a
/// catalog error they are left out and `dcs_backup_catalog_up` says 0.
async fn from_catalog(state: &Shared, out: &mut Exposition) {
    let catalog = &state.catalog;
    let (waiting, stats) =
        tokio::join!(catalog.waiting_jobs(now_millis()), catalog.instance_stats());
    if let Err(e) = waiting.as_ref().map(|_| ()).and(stats.as_ref().map(|_| ())) {
        tracing::warn!(error = %e, "metrics: catalog unavailable");
    }
    out.family(
        "dcs_backup_catalog_up",
        "1 if this scrape could read the catalog; the catalog-derived families are missing when 0.",
        Type::Gauge,
    );
    out.sample(
        "dcs_backup_catalog_up",
        &[],
        if waiting.is_ok() && stats.is_ok() {
            1.0
        } else {
            0.0
        },
    );
    if let Ok(n) = waiting {
        out.family(
            "dcs_backup_jobs_queued",
            "Jobs waiting for a runner, on every replica sharing the catalog (from the catalog: the same on every replica).",
            Type::Gauge,
        );
        out.sample("dcs_backup_jobs_queued", &[], n as f64);
    }
    let Ok(stats) = stats else { return };
    out.family(
        "dcs_backup_last_success_timestamp_seconds",
        "When the newest succeeded job of an instance finished; a backup counts while it is stored (from the catalog).",
        Type::Gauge,
    );
    for s in &stats {
        for (kind, at) in [
            ("backup", s.backup_succeeded),
            ("restore", s.restore_succeeded),
        ] {
            if let Some(at) = at {
                out.sample(
                    "dcs_backup_last_success_timestamp_seconds",
                    &[("instance_id", s.id.as_str()), ("kind", kind)],
                    seconds(at),
                );
            }
        }
    }
    out.family(
        "dcs_backup_last_failure_timestamp_seconds",
        "When the newest failed job of an instance was recorded (from the catalog).",
        Type::Gauge,
    );
    for s in &stats {
        for (kind, at) in [("backup", s.backup_failed), ("restore", s.restore_failed)] {
            if let Some(at) = at {
                out.sample(
                    "dcs_backup_last_failure_timestamp_seconds",
                    &[("instance_id", s.id.as_str()), ("kind", kind)],
                    seconds(at),
                );
            }
        }
    }
    out.family(
        "dcs_backup_policy_period_seconds",
        "Longest time between two planned windows of an instance's automatic backup policy (from the catalog).",
        Type::Gauge,
    );
    for s in &stats {
        if let Some(period) = s.policy.as_ref().and_then(crate::jobs::scheduler::period) {
            out.sample(
                "dcs_backup_policy_period_seconds",
                &[("instance_id", s.id.as_str())],
                seconds(period),
            );
        }
    }
    match catalog.last_passed_verifications().await {
        Ok(passed) => {
            out.family(
                "dcs_backup_verification_last_success_timestamp_seconds",
                "When the newest passed test restore of a backup of the instance finished (from the catalog).",
                Type::Gauge,
            );
            for (id, at) in &passed {
                out.sample(
                    "dcs_backup_verification_last_success_timestamp_seconds",
                    &[("instance_id", id.as_str())],
                    seconds(*at),
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read test restores"),
    }
    let ids: Vec<_> = stats.iter().map(|s| &s.id).collect();
    let up = state
        .reachability
        .for_scrape(catalog, &state.redis, &ids)
        .await;
    out.family(
        "dcs_backup_instance_up",
        "1 if the instance answered PING at its last probe by this replica, 0 if not; absent until first probed.",
        Type::Gauge,
    );
    for (id, up) in ids.iter().zip(up) {
        if let Some(up) = up {
            out.sample(
                "dcs_backup_instance_up",
                &[("instance_id", id.as_str())],
                f64::from(u8::from(up)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let t = Secret::new("s3cret-token");
        assert!(bearer_matches(&with(&[b"Bearer s3cret-token"]), &t));
        assert!(bearer_matches(&with(&[b"bearer s3cret-token"]), &t));
        assert!(!bearer_matches(&with(&[]), &t));
        assert!(!bearer_matches(&with(&[b"Bearer s3cret-toke"]), &t));
        assert!(!bearer_matches(&with(&[b"Bearer s3cret-token2"]), &t));
        assert!(!bearer_matches(&with(&[b"Basic s3cret-token"]), &t));
        assert!(!bearer_matches(&with(&[b"Bearer"]), &t));
        assert!(!bearer_matches(&with(&[b"s3cret-token"]), &t));
        assert!(!bearer_matches(&with(&[b"Bearer \xff\xfe"]), &t));
        assert!(!bearer_matches(
            &with(&[b"Bearer s3cret-token", b"Bearer other"]),
            &t
        ));
    }
}
