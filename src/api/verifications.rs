//! Test restores (issue 17): starting and listing them, marking adopted
//! instances as sandboxes, and the test-restore policy.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::params::list_query;
use super::wire::{
    optional_body, parse_body, validate_policy, BackupPlanJson, BackupPolicyJson,
    CreateVerificationBody, CreateVerificationResponse, SandboxBody, VerificationJson,
    VerificationListJson, VerificationPolicyJson,
};
use super::{Call, Shared, Version};
use crate::jobs::verification::{DEFAULT_SAMPLE, MAX_SAMPLE};
use crate::model::{
    now_millis, BackupId, BackupRecord, BackupStatus, Instance, InstanceId, VerificationOrigin,
    VerificationPolicy,
};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}/verifications",
            get(list_verifications).post(create_verification),
        )
        .route(
            "/v2/{project_id}/instances/{instance_id}/sandbox",
            put(set_sandbox),
        )
        .route(
            "/v2/{project_id}/instances/{instance_id}/verification-policy",
            get(show_policy).put(set_policy),
        )
}

/// The caller's backup of this instance.
async fn load_backup(state: &Shared, inst: &Instance, raw: &str) -> ApiResult<BackupRecord> {
    let id = BackupId::parse(raw).ok_or_else(|| ApiError::invalid("backup_id"))?;
    match state.catalog.backup(&id).await? {
        Some(b) if b.instance_id == inst.id && b.project_id == inst.project_id => Ok(b),
        _ => Err(ApiError::invalid("backup_id")),
    }
}

/// `scratch`, or an instance of the caller's project marked as a sandbox
/// that is not `source` itself.
async fn check_sandbox(call: &Call, v: &Value, source: &InstanceId) -> ApiResult<String> {
    let raw = match v {
        Value::Null => return Ok("scratch".into()),
        Value::String(s) if s == "scratch" => return Ok("scratch".into()),
        Value::String(s) => s,
        _ => return Err(ApiError::invalid("sandbox")),
    };
    let id = InstanceId::parse(raw).ok_or_else(|| {
        ApiError::invalid("sandbox").with_ext("give \"scratch\" or the id of a sandbox instance")
    })?;
    let state = &call.state;
    let found = state.catalog.instance(&call.caller.0, &id).await?;
    let Some(inst) = found else {
        return Err(ApiError::invalid("sandbox").with_ext("no such instance"));
    };
    if &inst.id == source {
        return Err(ApiError::invalid("sandbox")
            .with_ext("a test restore never loads into the instance the backup came from"));
    }
    if !state.catalog.is_sandbox(&inst.id).await? {
        return Err(ApiError::invalid("sandbox")
            .with_ext("the instance is not marked as a sandbox (PUT …/instances/{id}/sandbox)"));
    }
    Ok(inst.id.to_string())
}

/// Start a test restore of a succeeded backup: load it into a sandbox
/// (never the instance it came from) and check it.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}/verifications",
    params(("project_id" = String, Path), ("instance_id" = String, Path), ("backup_id" = String, Path)),
    request_body = CreateVerificationBody,
    responses(
        (status = 200, body = CreateVerificationResponse),
        (status = 400, description = "DCS.4800 backup, sandbox or sample; DCS.4087 the backup did not succeed; DCS.4096 a test restore of the instance is running"),
        (status = 404, description = "DCS.3022"),
    )
)]
pub async fn create_verification(
    call: Call,
    body: Bytes,
) -> ApiResult<Json<CreateVerificationResponse>> {
    let state = &call.state;
    let inst = call.instance().await?;
    let body: CreateVerificationBody = optional_body(&body)?;
    let sample = match &body.sample {
        Value::Null => DEFAULT_SAMPLE,
        v => v
            .as_u64()
            .filter(|n| *n <= MAX_SAMPLE)
            .ok_or_else(|| ApiError::invalid("sample").with_ext("0 to 100000 keys"))?,
    };
    let backup = load_backup(state, &inst, call.raw_backup_id()).await?;
    if backup.status != BackupStatus::Succeed {
        return Err(ApiError::new(super::error::Dcs::BackupNotSucceeded)
            .with_ext(format!("the backup is {}", backup.status)));
    }
    let sandbox = check_sandbox(&call, &body.sandbox, &inst.id).await?;
    let rec = state
        .jobs
        .queue_verification(&backup, &sandbox, sample, VerificationOrigin::Manual)
        .await?;
    Ok(Json(CreateVerificationResponse {
        verification_id: rec.id.to_string(),
    }))
}

/// A backup's test restores, newest first.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}/verifications",
    params(
        ("project_id" = String, Path), ("instance_id" = String, Path), ("backup_id" = String, Path),
        ("offset" = Option<i64>, Query), ("limit" = Option<i64>, Query, description = "1–1000, default 10"),
    ),
    responses(
        (status = 200, body = VerificationListJson),
        (status = 400, description = "DCS.4800"),
        (status = 404, description = "DCS.3022"),
    )
)]
pub async fn list_verifications(call: Call, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let state = &call.state;
    let inst = call.instance_including_deleted().await?;
    let q = list_query(raw.as_deref(), Version::V2)?;
    if q.begin.is_some() || q.end.is_some() {
        return Err(
            ApiError::invalid("begin_time").with_ext("test restores are listed by page only")
        );
    }
    let backup = load_backup(state, &inst, call.raw_backup_id()).await?;
    let (items, total) = state
        .catalog
        .verifications_of_backup(&backup.id, q.offset, q.limit)
        .await?;
    let body = VerificationListJson {
        verifications: items.iter().map(VerificationJson::from).collect(),
        total_num: total,
    };
    serde_json::to_value(body)
        .map(Json)
        .map_err(|_| ApiError::internal())
}

/// Mark an adopted instance as a sandbox (test restores replace its data),
/// or unmark it. Refused for an instance with a backup policy or any backup.
#[utoipa::path(
    put,
    path = "/v2/{project_id}/instances/{instance_id}/sandbox",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = SandboxBody,
    responses(
        (status = 204, description = "Marked or unmarked"),
        (status = 400, description = "DCS.4800 sandbox: not a boolean, or the instance has a backup policy or backups"),
        (status = 404, description = "DCS.3022"),
    )
)]
pub async fn set_sandbox(call: Call, body: Bytes) -> ApiResult<StatusCode> {
    let state = &call.state;
    let inst = call.instance().await?;
    let body: SandboxBody = parse_body(&body)?;
    let on = body
        .sandbox
        .as_bool()
        .ok_or_else(|| ApiError::invalid("sandbox").with_ext("true or false"))?;
    if on {
        if inst.policy.is_some() {
            return Err(ApiError::invalid("sandbox").with_ext(
                "the instance has a backup policy: a sandbox's data is replaced by test restores, \
                 so an instance that is backed up cannot be one",
            ));
        }
        if state.catalog.has_backups(&inst.id).await? {
            return Err(ApiError::invalid("sandbox").with_ext(
                "the instance has backups: a sandbox's data is replaced by test restores, so an \
                 instance that is backed up cannot be one",
            ));
        }
    }
    if !state
        .catalog
        .set_sandbox(&inst.id, on, now_millis())
        .await?
    {
        return Err(ApiError::invalid("sandbox")
            .with_ext("the instance gained a backup policy or a backup meanwhile"));
    }
    tracing::info!(instance = %inst.id, sandbox = on, "sandbox mark changed");
    Ok(StatusCode::NO_CONTENT)
}

fn policy_json(p: &VerificationPolicy) -> VerificationPolicyJson {
    let plan = p.plan.as_ref();
    VerificationPolicyJson {
        enabled: Value::Bool(p.enabled),
        backup_at: plan
            .map(|b| {
                Value::from(
                    b.backup_at
                        .iter()
                        .map(|d| i64::from(*d))
                        .collect::<Vec<_>>(),
                )
            })
            .unwrap_or(Value::Null),
        begin_at: plan
            .and_then(|b| b.begin_hour)
            .map(|h| Value::from(crate::model::window_label(h)))
            .unwrap_or(Value::Null),
        timezone: plan
            .and_then(|b| b.timezone_offset.clone())
            .map(Value::from)
            .unwrap_or(Value::Null),
        sandbox: Value::from(p.sandbox.clone()),
        after_backup: Value::Bool(p.after_backup),
    }
}

/// The instance's test-restore policy (disabled when never set).
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/verification-policy",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    responses((status = 200, body = VerificationPolicyJson), (status = 404, description = "DCS.3022"))
)]
pub async fn show_policy(call: Call) -> ApiResult<Json<VerificationPolicyJson>> {
    let inst = call.instance().await?;
    let p = call
        .state
        .catalog
        .verification_policy(&inst.id)
        .await?
        .unwrap_or(VerificationPolicy {
            enabled: false,
            plan: None,
            sandbox: "scratch".into(),
            after_backup: false,
        });
    Ok(Json(policy_json(&p)))
}

/// Set the test-restore policy: the newest succeeded backup is tested in
/// each planned window (once, whatever the number of replicas), and, with
/// `after_backup`, every automatic backup as soon as it succeeds.
#[utoipa::path(
    put,
    path = "/v2/{project_id}/instances/{instance_id}/verification-policy",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = VerificationPolicyJson,
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "DCS.4004/4005 body; DCS.4075 backup_at; DCS.4076 begin_at; DCS.4800 enabled, timezone, sandbox or after_backup"),
        (status = 404, description = "DCS.3022"),
    )
)]
pub async fn set_policy(call: Call, body: Bytes) -> ApiResult<StatusCode> {
    let state = &call.state;
    let inst = call.instance().await?;
    let body: VerificationPolicyJson = parse_body(&body)?;
    let enabled = body
        .enabled
        .as_bool()
        .ok_or_else(|| ApiError::invalid("enabled").with_ext("true or false"))?;
    let after_backup = match &body.after_backup {
        Value::Null => false,
        v => v
            .as_bool()
            .ok_or_else(|| ApiError::invalid("after_backup").with_ext("true or false"))?,
    };
    let timezone = match &body.timezone {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        _ => return Err(ApiError::invalid("timezone")),
    };
    let plan = if body.backup_at.is_null() && body.begin_at.is_null() {
        None
    } else {
        // Windows are validated exactly as a backup policy's.
        let p = validate_policy(&BackupPolicyJson {
            backup_type: Value::from("auto"),
            save_days: Value::from(1),
            periodical_backup_plan: Some(BackupPlanJson {
                timezone_offset: timezone,
                backup_at: body.backup_at.clone(),
                period_type: Value::from("weekly"),
                begin_at: body.begin_at.clone(),
            }),
        })
        .map_err(|e| {
            if e.code() == "DCS.4800" {
                ApiError::invalid("timezone")
            } else {
                e
            }
        })?;
        Some(p)
    };
    if enabled && plan.is_none() && !after_backup {
        return Err(ApiError::invalid("begin_at")
            .with_ext("an enabled policy needs windows (backup_at, begin_at) or after_backup"));
    }
    let sandbox = check_sandbox(&call, &body.sandbox, &inst.id).await?;
    let policy = VerificationPolicy {
        enabled,
        plan,
        sandbox,
        after_backup,
    };
    if !state
        .catalog
        .set_verification_policy(&inst.id, &policy, now_millis())
        .await?
    {
        return Err(ApiError::new(super::error::Dcs::NoInstance));
    }
    Ok(StatusCode::NO_CONTENT)
}
