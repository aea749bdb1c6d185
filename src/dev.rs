//! Developer tools behind the hidden `dcs-backup dev` subcommand: seeding
//! a catalog with synthetic records for tests and benchmarks.

use crate::api::params::parse_compact_time;
use crate::catalog::{Catalog, NewBackup, NewRestore};
use crate::config::{load_common, SeedArgs, SignArgs};
use crate::model::{
    now_millis, BackupFormat, BackupId, BackupStatus, BackupType, InstanceId, JobError, RestoreId,
    RestoreStatus,
};

type AnyError = Box<dyn std::error::Error>;

/// A plausible mix of statuses, types and formats.
pub fn synthetic_backup(instance: &crate::model::Instance, i: u64, created_at: i64) -> NewBackup {
    let status = match i % 10 {
        7 => BackupStatus::Failed,
        8 => BackupStatus::Expired,
        _ => BackupStatus::Succeed,
    };
    NewBackup {
        id: BackupId::generate(),
        instance_id: instance.id.clone(),
        project_id: instance.project_id.clone(),
        backup_type: if i.is_multiple_of(3) {
            BackupType::Auto
        } else {
            BackupType::Manual
        },
        format: if i.is_multiple_of(4) {
            BackupFormat::Aof
        } else {
            BackupFormat::Rdb
        },
        status,
        period: None,
        remark: format!("seed {i}"),
        created_at,
        error: (status == BackupStatus::Failed).then_some(JobError::Storage),
        keep_for: None,
    }
}

pub async fn seed(args: &SeedArgs) -> Result<(), AnyError> {
    let (data_dir, url) = load_common(&args.common)?;
    let keys =
        crate::server::secret_keys(crate::config::secret_key_from_env().as_ref(), &data_dir)?;
    let catalog = Catalog::connect(&url)
        .await?
        .with_secrets(std::sync::Arc::new(keys));
    let id = InstanceId::parse(&args.instance_id).ok_or("invalid instance id")?;
    let inst = catalog.instance_any(&id).await?.ok_or("no such instance")?;
    let n = args.backups.max(args.restores).max(args.clone_backups);
    let from = match &args.from {
        Some(t) => parse_compact_time(t).ok_or("--from must be yyyyMMddHHmmss")?,
        None => now_millis() - n as i64 * args.step_ms,
    };
    let backups: Vec<NewBackup> = (0..args.backups)
        .map(|i| synthetic_backup(&inst, i, from + i as i64 * args.step_ms))
        .collect();
    for chunk in backups.chunks(50_000) {
        catalog.import_backups(&inst.id, chunk).await?;
    }
    let source = backups
        .first()
        .map(|b| b.id.clone())
        .unwrap_or_else(BackupId::generate);
    for i in 0..args.restores {
        catalog
            .insert_restore(&NewRestore {
                id: RestoreId::generate(),
                instance_id: inst.id.clone(),
                project_id: inst.project_id.clone(),
                backup_id: source.clone(),
                backup_name: "backup_seed".into(),
                backup_remark: String::new(),
                source_instance_id: inst.id.clone(),
                source_instance_name: inst.name.clone(),
                remark: format!("seed {i}"),
                status: if i % 5 == 4 {
                    RestoreStatus::Failed
                } else {
                    RestoreStatus::Succeed
                },
                error: (i % 5 == 4).then_some(JobError::RestoreSync),
                filter: None,
                created_at: from + i as i64 * args.step_ms,
            })
            .await?;
    }
    for c in 0..args.clones {
        let mut clone = inst.clone();
        clone.id = InstanceId::generate();
        clone.name = format!("{}-clone-{c}", inst.name);
        catalog.insert_instance(&clone).await?;
        let recs: Vec<NewBackup> = (0..args.clone_backups)
            .map(|i| synthetic_backup(&clone, i, from + i as i64 * args.step_ms))
            .collect();
        catalog.import_backups(&clone.id, &recs).await?;
    }
    println!(
        "{}",
        serde_json::json!({"instance_id": inst.id.as_str(), "backups": args.backups, "restores": args.restores,
                           "clones": args.clones, "clone_backups": args.clone_backups})
    );
    Ok(())
}

/// Prints `Name: value` lines of a request signed with `--ak`/`--sk`.
pub fn sign(args: &SignArgs) -> Result<(), AnyError> {
    let rest = args
        .url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or("--url must be absolute")?;
    let (host, path_query) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (
            if path_query.is_empty() {
                "/"
            } else {
                path_query
            },
            None,
        ),
    };
    let method: http::Method = args.method.parse().map_err(|_| "bad --method")?;
    let signer = crate::signing::RequestSigner {
        ak: &args.ak,
        sk: &args.sk,
    };
    for (k, v) in signer.headers(
        &method,
        path,
        query,
        host,
        args.body.as_bytes(),
        time::OffsetDateTime::now_utc(),
    ) {
        println!("{k}: {v}");
    }
    Ok(())
}
