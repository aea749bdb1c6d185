//! The bases a restore to an instant can start from.
//!
//! Two kinds: the capture's own (`pitr_bases`: each full sync of a capture
//! link and each periodic base), and every backup of the instance, manual
//! or automatic, whose manifest says where in the replication history its
//! snapshot stands (`repl_id`, `repl_offset` per file, manifest version 2).
//! A backup whose position lies inside the captured log starts a chain of
//! its own (`periods::chains` decides, exactly as for a periodic base), so
//! a backup taken since the last base shortens the replay, and the capture
//! skips a periodic base while a backup is recent (one fork fewer on the
//! source).
//!
//! A backup's span starts once it was stored (its manifest's
//! `completed_at`), as a periodic base's does. Its files stay the
//! backup's: PITR retention neither keeps nor removes them, and a backup
//! that is deleted, expires, or fails a test restore stops being a base.

use serde::Deserialize;

use super::capture::shard_key_of;
use crate::catalog::{BaseRow, Catalog, CatalogError};
use crate::model::InstanceId;
use crate::storage::{BackupLocation, Manifest};

/// The bases one backup's manifest gives: one per file that records its
/// replication position. `id` must be the backup the manifest is stored
/// with, of `instance`; anything else gives none.
pub fn from_backup(instance: &InstanceId, id: &str, manifest: &Manifest) -> Vec<BaseRow> {
    if manifest.instance_id != instance.as_str() || manifest.backup_id != id {
        return Vec::new();
    }
    let cluster = manifest.cache_mode == "cluster";
    let prefix = BackupLocation::new(&manifest.project_id, instance.as_str(), id)
        .prefix()
        .to_owned();
    manifest
        .files
        .iter()
        .filter_map(|f| {
            let (Some(repl_id), Some(offset)) = (f.repl_id.as_ref(), f.repl_offset) else {
                return None;
            };
            let offset = i64::try_from(offset).ok()?;
            if repl_id.is_empty() || (cluster && f.slots.is_empty()) {
                return None;
            }
            // The base's own manifest: the backup's, with this file alone.
            let one = Manifest {
                files: vec![f.clone()],
                ..manifest.clone()
            };
            Some(BaseRow {
                id: id.to_owned(),
                instance_id: instance.clone(),
                shard: shard_key_of(cluster, &f.slots),
                prefix: prefix.clone(),
                file_name: f.name.clone(),
                repl_id: repl_id.clone(),
                repl_offset: offset,
                taken_at: manifest.started_at,
                ready_at: manifest.completed_at,
                size: i64::try_from(f.size).unwrap_or(i64::MAX),
                manifest: serde_json::to_string(&one).ok()?,
                from_backup: true,
            })
        })
        .collect()
}

/// Every base of `instance`: the capture's, then its backups', each list
/// in the order it was taken, each ready no earlier than the last byte of
/// the segment its offset lies in.
pub async fn all(catalog: &Catalog, instance: &InstanceId) -> Result<Vec<BaseRow>, CatalogError> {
    let mut out = catalog.pitr_bases(instance).await?;
    for mut b in backups(catalog, instance).await? {
        // As for the capture's bases (`Catalog::pitr_bases`).
        if let Some(at) = catalog
            .pitr_segment_around(instance, &b.shard, &b.repl_id, b.repl_offset)
            .await?
        {
            b.ready_at = b.ready_at.max(at);
        }
        out.push(b);
    }
    Ok(out)
}

/// The bases the instance's backups give, as their manifests say (ready
/// when stored; [`all`] also moves that to their segment's last byte).
/// Enough where only positions and `taken_at` matter.
pub async fn backups(
    catalog: &Catalog,
    instance: &InstanceId,
) -> Result<Vec<BaseRow>, CatalogError> {
    let mut out = Vec::new();
    for (id, json) in catalog.pitr_backup_manifests(instance).await? {
        // A manifest this version cannot read is simply not a base.
        if let Ok(m) = serde_json::from_str::<Manifest>(&json) {
            out.extend(from_backup(instance, &id, &m));
        }
    }
    Ok(out)
}

/// The format of a base's file (`rdb`, or `aof` for a backup kept so).
pub fn format(base: &BaseRow) -> String {
    #[derive(Deserialize)]
    struct Format {
        format: String,
    }
    serde_json::from_str::<Format>(&base.manifest)
        .map(|f| f.format)
        .unwrap_or_else(|_| "rdb".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ManifestFile;

    fn file(name: &str, slots: Vec<(u16, u16)>, pos: Option<(&str, u64)>) -> ManifestFile {
        ManifestFile {
            name: name.into(),
            size: 10,
            blake3: "00".into(),
            rdb_magic: "REDIS".into(),
            rdb_version: 10,
            rdb_checksum: "ok".into(),
            keys: 1,
            keys_per_db: Default::default(),
            expiring_keys: 0,
            functions: 0,
            slots,
            source_node: String::new(),
            shard_master: String::new(),
            keys_per_type: Default::default(),
            repl_id: pos.map(|p| p.0.to_owned()),
            repl_offset: pos.map(|p| p.1),
        }
    }

    fn manifest(mode: &str, files: Vec<ManifestFile>) -> Manifest {
        Manifest {
            manifest_version: 2,
            backup_id: "b1".into(),
            instance_id: "i1".into(),
            project_id: "p1".into(),
            format: "aof".into(),
            cache_mode: mode.into(),
            engine: String::new(),
            server_version: String::new(),
            started_at: 100,
            completed_at: 200,
            files,
        }
    }

    #[test]
    fn a_backup_gives_a_base_per_positioned_file() {
        let inst = InstanceId::from_stored("i1".into());
        let m = manifest(
            "cluster",
            vec![
                file("a.aof", vec![(0, 8191)], Some(("r1", 42))),
                file("b.aof", vec![(8192, 16383)], None),
            ],
        );
        let b = from_backup(&inst, "b1", &m);
        assert_eq!(b.len(), 1, "a file without a position is no base");
        assert_eq!(b[0].shard, "slots-0-8191");
        assert_eq!(b[0].prefix, "p1/i1/b1/");
        assert_eq!((b[0].repl_id.as_str(), b[0].repl_offset), ("r1", 42));
        assert_eq!((b[0].taken_at, b[0].ready_at), (100, 200));
        assert!(b[0].from_backup);
        assert_eq!(format(&b[0]), "aof");
        let own: Manifest = serde_json::from_str(&b[0].manifest).unwrap();
        assert_eq!(own.files.len(), 1);

        let single = manifest("ha", vec![file("x.rdb", vec![], Some(("r1", 7)))]);
        assert_eq!(from_backup(&inst, "b1", &single)[0].shard, "main");
        // Another backup's or another instance's manifest is never taken.
        assert!(from_backup(&inst, "b2", &single).is_empty());
        let other = InstanceId::from_stored("i2".into());
        assert!(from_backup(&other, "b1", &single).is_empty());
    }
}
