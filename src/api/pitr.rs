//! Point-in-time recovery, on GeminiDB's v3 paths for this service's
//! instances (`huaweicloudsdkgaussdbfornosql` v3): the policy, the space
//! used, the restorable periods, a restore to an instant, and the job
//! listing that shows its status.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::error::{ApiError, ApiResult, Dcs};
use super::wire::{
    iso, parse_body, parse_instant, period_string, validate_pitr_policy, JobInstanceJson, JobJson,
    JobsJson, PitrInfoJson, PitrPeriodsJson, PitrPolicyBody, PitrPolicyJson, PitrRestoreBody,
    PitrRestoreResponse,
};
use super::{Call, Shared};
use crate::catalog::{NewRestore, PitrPolicy};
use crate::model::{compact_utc, now_millis, BackupId, InstanceId, RestoreId, RestoreStatus};
use crate::pitr::periods::periods;
use crate::pitr::replay::{backups_read, pick, PickError};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v3/{project_id}/redis/instances/{instance_id}/pitr/policy",
            get(show_pitr_policy).put(set_pitr_policy),
        )
        .route(
            "/v3/{project_id}/redis/instances/{instance_id}/pitr",
            get(show_pitr_info).put(restore_pitr),
        )
        .route(
            "/v3/{project_id}/redis/instances/{instance_id}/pitr/restorable-time-periods",
            get(list_pitr_periods),
        )
        .route("/v3/{project_id}/jobs", get(list_jobs))
}

/// Query parameters, each at most once (the middleware refuses repeats).
fn query_map(q: Option<&str>) -> std::collections::HashMap<String, String> {
    url_pairs(q.unwrap_or(""))
}

fn url_pairs(q: &str) -> std::collections::HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// Set the instance's PITR policy (capture runs while enabled).
#[utoipa::path(
    put,
    path = "/v3/{project_id}/redis/instances/{instance_id}/pitr/policy",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = PitrPolicyBody,
    responses((status = 200, description = "Stored"), (status = 400, description = "DCS.4800: enabled, interval (5–120) or keep_days (1–7)"), (status = 404))
)]
pub async fn set_pitr_policy(call: Call, body: Bytes) -> ApiResult<Response> {
    let inst = call.instance().await?;
    let b: PitrPolicyBody = parse_body(&body)?;
    let (enabled, interval_min, keep_days) = validate_pitr_policy(&b)?;
    call.state
        .catalog
        .set_pitr_policy(
            &PitrPolicy {
                instance_id: inst.id.clone(),
                project_id: inst.project_id.clone(),
                enabled,
                interval_min,
                keep_days,
            },
            now_millis(),
        )
        .await?;
    tracing::info!(instance = %inst.id, enabled, interval_min, keep_days, "pitr policy set");
    Ok((StatusCode::OK, Json(serde_json::json!({}))).into_response())
}

/// Show the instance's PITR policy.
#[utoipa::path(
    get,
    path = "/v3/{project_id}/redis/instances/{instance_id}/pitr/policy",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    responses((status = 200, body = PitrPolicyJson), (status = 404))
)]
pub async fn show_pitr_policy(call: Call) -> ApiResult<Response> {
    let inst = call.instance().await?;
    let p = call.state.catalog.pitr_policy(&inst.id).await?;
    let body = match p {
        Some(p) if p.enabled => PitrPolicyJson {
            enabled: true,
            interval: Some(p.interval_min),
            keep_days: Some(p.keep_days),
        },
        _ => PitrPolicyJson {
            enabled: false,
            interval: None,
            keep_days: None,
        },
    };
    Ok(Json(body).into_response())
}

/// Bytes the instance's PITR data (bases and log) occupies.
#[utoipa::path(
    get,
    path = "/v3/{project_id}/redis/instances/{instance_id}/pitr",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    responses((status = 200, body = PitrInfoJson), (status = 404))
)]
pub async fn show_pitr_info(call: Call) -> ApiResult<Response> {
    let inst = call.instance().await?;
    let bytes = call.state.catalog.pitr_storage(&inst.id).await?;
    Ok(Json(PitrInfoJson {
        storage: bytes.to_string(),
    })
    .into_response())
}

/// Restorable periods overlapping `[start_time, end_time]`, oldest first.
#[utoipa::path(
    get,
    path = "/v3/{project_id}/redis/instances/{instance_id}/pitr/restorable-time-periods",
    params(
        ("project_id" = String, Path), ("instance_id" = String, Path),
        ("start_time" = String, Query, description = "yyyy-mm-ddThh:mm:ssZ"),
        ("end_time" = String, Query, description = "yyyy-mm-ddThh:mm:ssZ"),
        ("offset" = Option<u64>, Query), ("limit" = Option<u64>, Query, description = "0–100, default 100"),
    ),
    responses((status = 200, body = PitrPeriodsJson), (status = 400, description = "DCS.4800 names the parameter"), (status = 404))
)]
pub async fn list_pitr_periods(call: Call, RawQuery(q): RawQuery) -> ApiResult<Response> {
    call.instance_id()?;
    let q = query_map(q.as_deref());
    let time = |name: &str| {
        q.get(name)
            .and_then(|v| parse_instant(v))
            .ok_or_else(|| ApiError::invalid(name))
    };
    let start = time("start_time")?;
    let end = time("end_time")?;
    if end < start {
        return Err(ApiError::new(Dcs::EndBeforeBegin));
    }
    let num = |name: &str, default: u64, max: u64| match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| ApiError::invalid(name)),
    };
    let offset = num("offset", 0, u64::from(u32::MAX))?;
    let limit = num("limit", 100, 100)?;
    let inst = call.instance().await?;
    let c = &call.state.catalog;
    let bases = crate::pitr::bases::all(c, &inst.id).await?;
    let segments = c.pitr_runs(&inst.id).await?;
    let links = c.pitr_links(&inst.id).await?;
    let all: Vec<String> = periods(&bases, &segments, &links)
        .into_iter()
        .filter_map(|(a, b)| {
            let (a, b) = (a.max(start), b.min(end));
            if a > b {
                return None;
            }
            period_string(a, b)
        })
        .collect();
    let total = all.len() as u64;
    let page = all
        .into_iter()
        .skip(offset.min(usize::MAX as u64) as usize)
        .take(limit as usize)
        .collect();
    Ok(Json(PitrPeriodsJson {
        restore_time: page,
        total_count: total,
    })
    .into_response())
}

/// Restore the instance (or `target_instance_id`) to `restore_time`.
#[utoipa::path(
    put,
    path = "/v3/{project_id}/redis/instances/{instance_id}/pitr",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = PitrRestoreBody,
    responses(
        (status = 202, body = PitrRestoreResponse, description = "Queued; the job is also a restore record of the target"),
        (status = 400, description = "DCS.4800 restore_time (malformed, or outside every restorable period) or target_instance_id; DCS.4096/4097 busy"),
        (status = 404),
    )
)]
pub async fn restore_pitr(call: Call, body: Bytes) -> ApiResult<Response> {
    let source = call.instance().await?;
    let b: PitrRestoreBody = parse_body(&body)?;
    let at = b
        .restore_time
        .as_str()
        .and_then(parse_instant)
        .ok_or_else(|| ApiError::invalid("restore_time"))?;
    let target = match &b.target_instance_id {
        serde_json::Value::Null => source.clone(),
        serde_json::Value::String(id) => {
            let id =
                InstanceId::parse(id).ok_or_else(|| ApiError::invalid("target_instance_id"))?;
            call.state
                .catalog
                .instance(&call.caller.0, &id)
                .await?
                .ok_or_else(|| ApiError::invalid("target_instance_id"))?
        }
        _ => return Err(ApiError::invalid("target_instance_id")),
    };
    let jobs = &call.state.jobs;
    let picks = match pick(jobs, &source.id, at).await {
        Ok(p) => p,
        Err(PickError::Outside) => {
            return Err(ApiError::invalid("restore_time")
                .with_ext("the time is outside every restorable period"))
        }
        Err(PickError::Catalog(e)) => return Err(e.into()),
    };
    let base = picks.first().map(|p| p.base.id.clone()).unwrap_or_default();
    let id = RestoreId::generate();
    // The PITR row first: the job may be claimed as soon as it is queued.
    call.state
        .catalog
        .insert_pitr_restore(id.as_str(), &source.id, at, &backups_read(&picks))
        .await?;
    let rec = call
        .state
        .catalog
        .enqueue_restore(&NewRestore {
            id,
            instance_id: target.id.clone(),
            project_id: target.project_id.clone(),
            backup_id: BackupId::from_stored(base),
            backup_name: format!("pitr_{}", compact_utc(at)),
            backup_remark: String::new(),
            source_instance_id: source.id.clone(),
            source_instance_name: source.name.clone(),
            remark: String::new(),
            status: RestoreStatus::Waiting,
            created_at: now_millis(),
            error: None,
            filter: None,
        })
        .await?;
    jobs.wake();
    tracing::info!(instance = %source.id, target = %target.id, restore = %rec.id, at, "pitr restore queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(PitrRestoreResponse {
            job_id: rec.id.to_string(),
        }),
    )
        .into_response())
}

/// A job by id (`?id=`): a restore of this service, PITR or not.
#[utoipa::path(
    get,
    path = "/v3/{project_id}/jobs",
    params(("project_id" = String, Path), ("id" = String, Query)),
    responses((status = 200, body = JobsJson), (status = 400, description = "DCS.4800 id"))
)]
pub async fn list_jobs(call: Call, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let q = query_map(q.as_deref());
    let id = q
        .get("id")
        .and_then(|v| {
            let ok = !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            ok.then(|| RestoreId::from_stored(v.clone()))
        })
        .ok_or_else(|| ApiError::invalid("id"))?;
    let rec = call
        .state
        .catalog
        .restore(&id)
        .await?
        .filter(|r| r.project_id == call.caller.0);
    let Some(rec) = rec else {
        return Ok(Json(JobsJson {
            jobs: vec![],
            total_count: 0,
        })
        .into_response());
    };
    let name = call
        .state
        .catalog
        .instance_any(&rec.instance_id)
        .await?
        .map(|i| i.name)
        .unwrap_or_default();
    let (status, done) = match rec.status {
        RestoreStatus::Waiting | RestoreStatus::Restoring => ("Running", false),
        RestoreStatus::Succeed => ("Completed", true),
        RestoreStatus::Failed => ("Failed", true),
    };
    let job = JobJson {
        id: rec.id.to_string(),
        name: if rec.backup_name.starts_with("pitr_") {
            "RestoreRedisPitr".into()
        } else {
            "RestoreRedis".into()
        },
        status: status.into(),
        start_time: iso(rec.created_at),
        end_time: if done {
            iso(rec.updated_at)
        } else {
            String::new()
        },
        progress: format!("{}%", rec.progress / 100),
        instance: JobInstanceJson {
            id: rec.instance_id.to_string(),
            name,
        },
        fail_reason: rec.reason.clone().unwrap_or_default(),
    };
    Ok(Json(JobsJson {
        jobs: vec![job],
        total_count: 1,
    })
    .into_response())
}
