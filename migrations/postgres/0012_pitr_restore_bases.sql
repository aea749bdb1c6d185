-- PITR (issue 16): every backup a restore to a point in time reads as a
-- base (a cluster's shards may start from different ones): deleting or
-- expiring one is refused while the restore is unfinished, as for an
-- ordinary restore's backup_id.
CREATE TABLE pitr_restore_bases (
    restore_id  TEXT NOT NULL,
    backup_id   TEXT NOT NULL,
    PRIMARY KEY (restore_id, backup_id)
);
CREATE INDEX pitr_restore_bases_by_backup ON pitr_restore_bases(backup_id);
