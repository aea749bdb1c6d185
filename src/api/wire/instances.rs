//! Instances: the bodies that adopt and modify one, and how one is shown.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{iso, BackupPolicyJson, InstanceBackupPolicyJson};
use crate::model::Instance;

/// The body of `POST /instances` (DCS CreateInstance) and of
/// `PUT /instances/{id}` (ModifyInstanceBody, plus the connection fields
/// of an adopted server): the fields that mean something for an adopted
/// server. Fields of a cloud order (capacity, VPC, billing) are accepted
/// and ignored; so are `engine` and `no_password_access` when modifying.
/// In a modification, an absent field keeps what is stored.
#[derive(Deserialize, ToSchema, Default)]
pub struct InstanceBody {
    /// Required when adopting.
    #[serde(default)]
    #[schema(value_type = String)]
    pub name: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub engine: Value,
    /// Address or host name of the Redis server (a master, or any cluster
    /// node); required when adopting.
    #[serde(default)]
    #[schema(value_type = String)]
    pub private_ip: Value,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub port: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub password: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub access_user: Value,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub enable_ssl: Value,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub no_password_access: Value,
    #[serde(default)]
    pub instance_backup_policy: Option<BackupPolicyJson>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedInstanceJson {
    pub instance_id: String,
    pub instance_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreateInstanceResponse {
    pub instances: Vec<CreatedInstanceJson>,
}

/// One node of the discovered topology (an extension to the DCS shape).
#[derive(Serialize, ToSchema)]
pub struct ShardJson {
    pub master: String,
    pub replicas: Vec<String>,
    pub slots: Vec<String>,
}

/// An instance (ShowInstance / InstanceListInfo fields that apply).
#[derive(Serialize, ToSchema)]
pub struct InstanceJson {
    pub instance_id: String,
    pub name: String,
    pub engine: String,
    pub engine_version: String,
    pub status: String,
    pub ip: String,
    pub port: u16,
    pub domain_name: String,
    pub cache_mode: String,
    pub description: String,
    pub created_at: String,
    pub update_at: String,
    pub enable_ssl: bool,
    pub access_user: Option<String>,
    pub no_password_access: String,
    pub replica_count: i64,
    pub sharding_count: i64,
    pub project_id: String,
    pub instance_backup_policy: Option<InstanceBackupPolicyJson>,
    pub shards: Vec<ShardJson>,
}

impl InstanceJson {
    pub fn new(i: &Instance, status: &str) -> Self {
        let t = &i.topology;
        Self {
            instance_id: i.id.to_string(),
            name: i.name.clone(),
            engine: if t.engine == "valkey" {
                "Valkey"
            } else {
                "Redis"
            }
            .to_owned(),
            engine_version: t.version.clone(),
            status: status.to_owned(),
            ip: i.connection.host.clone(),
            port: i.connection.port,
            domain_name: i.connection.host.clone(),
            cache_mode: t.cache_mode().as_str().to_owned(),
            description: i.description.clone(),
            created_at: iso(i.created_at),
            update_at: iso(i.updated_at),
            enable_ssl: i.connection.tls,
            access_user: i.connection.username.clone(),
            no_password_access: (i.connection.password.is_none()).to_string(),
            replica_count: t.replica_count() as i64,
            sharding_count: t.shards.len() as i64,
            project_id: i.project_id.to_string(),
            instance_backup_policy: i
                .policy
                .as_ref()
                .map(|p| InstanceBackupPolicyJson::new(p, i.project_id.as_str())),
            shards: t
                .shards
                .iter()
                .map(|s| ShardJson {
                    master: s.master.to_string(),
                    replicas: s.replicas.iter().map(|r| r.to_string()).collect(),
                    slots: s.slots.iter().map(|(a, b)| format!("{a}-{b}")).collect(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct InstanceListJson {
    pub instance_num: u64,
    pub instances: Vec<InstanceJson>,
}
