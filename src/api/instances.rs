//! `/v2/{project_id}/instances`: adopting, showing, modifying and deleting
//! Redis servers.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::error::{ApiError, ApiResult, Dcs};
use super::params::{pairs, DEFAULT_LIMIT, MAX_LIMIT};
use super::wire::{
    parse_body, validate_policy, CreateInstanceResponse, CreatedInstanceJson, InstanceBody,
    InstanceJson, InstanceListJson,
};
use super::{instance_status, Call, Caller, Shared};
use crate::model::{now_millis, Connection, Instance, InstanceId, Secret, StoredPolicy, Topology};
use crate::redis::{discover, RedisError};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v2/{project_id}/instances",
            post(create_instance).get(list_instances),
        )
        .route(
            "/v2/{project_id}/instances/{instance_id}",
            get(show_instance)
                .put(modify_instance)
                .delete(delete_instance),
        )
}

fn validate_name(v: &Value) -> ApiResult<String> {
    let name = v.as_str().ok_or(Dcs::BadName)?;
    // The reference: 4–64 characters, starting with a letter or digit,
    // then letters, digits, underscores and hyphens.
    let ok = (4..=64).contains(&name.chars().count())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    Ok(ok.then(|| name.to_owned()).ok_or(Dcs::BadName)?)
}

fn validate_description(v: &Value) -> ApiResult<String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) if s.chars().count() <= 1024 => Ok(s.clone()),
        _ => Err(ApiError::new(Dcs::BadDescription)),
    }
}

fn validate_host(v: &Value) -> ApiResult<String> {
    let h = v.as_str().map(str::trim).unwrap_or("");
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    ok.then(|| h.to_owned())
        .ok_or_else(|| ApiError::invalid("private_ip"))
}

fn validate_port(v: &Value) -> ApiResult<Option<u16>> {
    match v {
        Value::Null => Ok(None),
        v => v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .map(Some)
            .ok_or_else(|| ApiError::invalid("port")),
    }
}

/// A password or user name: absent or empty is none; `fault` tells which
/// of the two is wrong.
fn credential_field(v: &Value, name: &str, fault: Dcs) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) if !credential_ok(s) => {
            Err(ApiError::new(fault).with_ext("at most 512 bytes, no control characters"))
        }
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ApiError::new(fault).with_ext(format!("{name} must be a string"))),
    }
}

fn optional_bool(v: &Value, name: &str) -> ApiResult<Option<bool>> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) if s == "true" || s == "false" => Ok(Some(s == "true")),
        _ => Err(ApiError::invalid(name)),
    }
}

/// Maps a failure to reach or log in to Redis to the DCS error that tells
/// the user which part of the request to fix. The texts are fixed
/// phrases: nothing a server sent is echoed, and a closed port reads like
/// a port where something else than Redis answered.
fn connect_error(e: &RedisError) -> ApiError {
    const AUTH: &str = "authentication failed";
    match e {
        RedisError::Auth(_) => ApiError::new(Dcs::WrongPassword).with_ext(AUTH),
        RedisError::Server(m) if m.starts_with("NOAUTH") || m.starts_with("WRONGPASS") => {
            ApiError::new(Dcs::WrongPassword).with_ext(AUTH)
        }
        RedisError::Server(m) if m.starts_with("NOPERM") => {
            ApiError::new(Dcs::BadUser).with_ext("the user lacks a permission the service needs")
        }
        RedisError::Tls(_) => ApiError::invalid("enable_ssl").with_ext("TLS handshake failed"),
        RedisError::Refused { .. } => {
            ApiError::invalid("private_ip").with_ext("not an allowed target")
        }
        RedisError::BadPeer(_) => ApiError::invalid("private_ip").with_ext(
            "the server reported an invalid node address (not an IP or host name and port)",
        ),
        RedisError::Busy(_) => ApiError::invalid("private_ip")
            .with_ext("too many servers are being discovered at once; try again"),
        _ => ApiError::invalid("private_ip")
            .with_ext("the server could not be reached or did not answer as Redis"),
    }
}

/// Longest password or user name accepted.
const MAX_CREDENTIAL: usize = 512;

/// A password or user name is sent to Redis as one RESP argument, but
/// nothing that could split a line-based protocol is accepted.
fn credential_ok(s: &str) -> bool {
    s.len() <= MAX_CREDENTIAL && !s.bytes().any(|b| b < 0x20 || b == 0x7f)
}

fn password_field(v: &Value) -> ApiResult<Option<String>> {
    credential_field(v, "password", Dcs::BadPassword)
}

fn user_field(v: &Value) -> ApiResult<Option<String>> {
    credential_field(v, "access_user", Dcs::BadUser)
}

async fn discover_or_reject(state: &Shared, conn: &Connection) -> ApiResult<Topology> {
    discover(conn, &state.redis).await.map_err(|e| {
        tracing::info!(host = %conn.host, port = conn.port, error = %e, "cannot adopt instance");
        connect_error(&e)
    })
}

async fn name_taken(
    state: &Shared,
    caller: &Caller,
    name: &str,
    except: Option<&InstanceId>,
) -> ApiResult<bool> {
    let (same, _) = state
        .catalog
        .list_instances(&caller.0, Some(name), true, 0, 2)
        .await?;
    Ok(same.iter().any(|i| Some(&i.id) != except))
}

/// Adopt an existing Redis or Valkey server.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/instances",
    params(("project_id" = String, Path)),
    request_body = InstanceBody,
    responses(
        (status = 200, body = CreateInstanceResponse, description = "Adopted"),
        (status = 400, description = "Invalid request, unreachable server or wrong password"),
        (status = 401, description = "Bad signature"),
    )
)]
pub async fn create_instance(call: Call, body: Bytes) -> ApiResult<Json<CreateInstanceResponse>> {
    let Call { state, caller, .. } = call;
    let body: InstanceBody = parse_body(&body)?;
    let name = validate_name(&body.name)?;
    let description = validate_description(&body.description)?;
    if let Some(engine) = body.engine.as_str() {
        if !engine.eq_ignore_ascii_case("redis") && !engine.eq_ignore_ascii_case("valkey") {
            return Err(ApiError::new(Dcs::EngineUnsupported));
        }
    }
    let host = validate_host(&body.private_ip)?;
    let port = validate_port(&body.port)?.unwrap_or(6379);
    let password = password_field(&body.password)?;
    let username = user_field(&body.access_user)?;
    let tls = optional_bool(&body.enable_ssl, "enable_ssl")?.unwrap_or(false);
    optional_bool(&body.no_password_access, "no_password_access")?;
    let now = now_millis();
    let policy = body
        .instance_backup_policy
        .as_ref()
        .map(validate_policy)
        .transpose()?
        .map(|policy| StoredPolicy {
            id: uuid::Uuid::new_v4().to_string(),
            policy,
            created_at: now,
            updated_at: now,
        });
    if name_taken(&state, &caller, &name, None).await? {
        return Err(ApiError::new(Dcs::NameExists));
    }
    let connection = Connection {
        host,
        port,
        username,
        password: password.map(Secret::new),
        tls,
    };
    let topology = discover_or_reject(&state, &connection).await?;
    let inst = Instance {
        id: InstanceId::generate(),
        project_id: caller.0.clone(),
        name: name.clone(),
        description,
        connection,
        topology,
        policy,
        created_at: now,
        updated_at: now,
    };
    state.catalog.insert_instance(&inst).await?;
    tracing::info!(instance = %inst.id, mode = %inst.topology.mode, version = %inst.topology.version, "instance adopted");
    Ok(Json(CreateInstanceResponse {
        instances: vec![CreatedInstanceJson {
            instance_id: inst.id.to_string(),
            instance_name: name,
        }],
    }))
}

/// List the project's instances.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances",
    params(
        ("project_id" = String, Path),
        ("offset" = Option<i64>, Query), ("limit" = Option<i64>, Query),
        ("name" = Option<String>, Query), ("name_equal" = Option<bool>, Query),
        ("instance_id" = Option<String>, Query),
    ),
    responses((status = 200, body = InstanceListJson))
)]
pub async fn list_instances(
    call: Call,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<InstanceListJson>> {
    let Call { state, caller, .. } = call;
    let q = pairs(raw.as_deref());
    let get = |k: &str| {
        q.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let num = |k: &str, default: u64, min: u64, max: u64| -> ApiResult<u64> {
        match get(k) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| ApiError::invalid(k)),
        }
    };
    let offset = num("offset", 0, 0, u64::MAX >> 2)?;
    let limit = num("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)?;
    let name_equal = match get("name_equal") {
        None => false,
        Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(ApiError::invalid("name_equal")),
    };
    let (items, total) = if let Some(id) = get("instance_id") {
        let id = InstanceId::parse(id).ok_or(Dcs::BadInstanceId)?;
        let found = state.catalog.instance(&caller.0, &id).await?;
        let n = u64::from(found.is_some());
        (found.into_iter().collect(), n)
    } else {
        state
            .catalog
            .list_instances(&caller.0, get("name"), name_equal, offset, limit)
            .await?
    };
    let statuses =
        futures::future::join_all(items.iter().map(|i| instance_status(&state, i))).await;
    let mut instances: Vec<InstanceJson> = items
        .iter()
        .zip(statuses)
        .map(|(i, s)| InstanceJson::new(i, s))
        .collect();
    if let Some(want) = get("status") {
        instances.retain(|i| i.status == want);
    }
    Ok(Json(InstanceListJson {
        instance_num: total,
        instances,
    }))
}

/// Show one instance, with its current reachability as `status`.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    responses((status = 200, body = InstanceJson), (status = 404, description = "DCS.3022"))
)]
pub async fn show_instance(call: Call) -> ApiResult<Json<InstanceJson>> {
    let inst = call.instance().await?;
    let status = instance_status(&call.state, &inst).await;
    Ok(Json(InstanceJson::new(&inst, status)))
}

/// Modify name, description, connection or backup policy. A changed
/// connection is verified (and the topology rediscovered) before anything
/// is stored.
#[utoipa::path(
    put,
    path = "/v2/{project_id}/instances/{instance_id}",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = InstanceBody,
    responses((status = 204, description = "Modified"), (status = 400), (status = 404))
)]
pub async fn modify_instance(call: Call, body: Bytes) -> ApiResult<StatusCode> {
    let mut inst = call.instance().await?;
    let Call { state, caller, .. } = call;
    let body: InstanceBody = parse_body(&body)?;
    let now = now_millis();
    if !body.name.is_null() {
        let name = validate_name(&body.name)?;
        if name != inst.name && name_taken(&state, &caller, &name, Some(&inst.id)).await? {
            return Err(ApiError::new(Dcs::NameExists));
        }
        inst.name = name;
    }
    if !body.description.is_null() {
        inst.description = validate_description(&body.description)?;
    }
    let mut conn = inst.connection.clone();
    if !body.private_ip.is_null() {
        conn.host = validate_host(&body.private_ip)?;
    }
    if let Some(port) = validate_port(&body.port)? {
        conn.port = port;
    }
    if !body.password.is_null() {
        conn.password = password_field(&body.password)?.map(Secret::new);
    }
    if !body.access_user.is_null() {
        conn.username = user_field(&body.access_user)?;
    }
    if let Some(tls) = optional_bool(&body.enable_ssl, "enable_ssl")? {
        conn.tls = tls;
    }
    // The stored password only goes where it went before: whoever moves
    // the instance elsewhere must know it.
    let old = &inst.connection;
    let moved = conn.host != old.host
        || conn.port != old.port
        || conn.username != old.username
        || conn.tls != old.tls;
    if moved && old.password.is_some() && body.password.is_null() {
        return Err(ApiError::new(Dcs::BadPassword).with_ext(
            "changing the address, port, user or TLS of an instance requires its password",
        ));
    }
    if let Some(p) = &body.instance_backup_policy {
        let policy = validate_policy(p)?;
        if state.catalog.is_sandbox(&inst.id).await? {
            return Err(ApiError::invalid("instance_backup_policy").with_ext(
                "the instance is a sandbox: test restores replace its data, so it is not backed up                  (unmark it first: PUT …/instances/{id}/sandbox)",
            ));
        }
        let (pid, created) = match &inst.policy {
            Some(old) => (old.id.clone(), old.created_at),
            None => (uuid::Uuid::new_v4().to_string(), now),
        };
        inst.policy = Some(StoredPolicy {
            id: pid,
            policy,
            created_at: created,
            updated_at: now,
        });
    }
    if conn != inst.connection {
        inst.topology = discover_or_reject(&state, &conn).await?;
        inst.connection = conn;
    }
    inst.updated_at = now;
    if !state.catalog.update_instance(&inst).await? {
        return Err(ApiError::new(Dcs::NoInstance));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Stop managing an instance. Its backup records and files are kept.
#[utoipa::path(
    delete,
    path = "/v2/{project_id}/instances/{instance_id}",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, description = "A job is running"), (status = 404))
)]
pub async fn delete_instance(call: Call) -> ApiResult<Response> {
    let inst = call.instance().await?;
    let Call { state, caller, .. } = call;
    if let Some(kind) = state.catalog.active_job_kind(&inst.id).await? {
        return Err(ApiError::busy(kind));
    }
    if !state
        .catalog
        .delete_instance(&caller.0, &inst.id, now_millis())
        .await?
    {
        return Err(ApiError::new(Dcs::NoInstance));
    }
    tracing::info!(instance = %inst.id, "instance deleted; its backups are kept");
    Ok(StatusCode::NO_CONTENT.into_response())
}
