-- Automatic backups: each auto backup's expiry is fixed when it is created
-- (so changing or removing a policy never expires a backup early), and each
-- planned window is claimed once, by one node, in backup_windows.
ALTER TABLE backups ADD COLUMN expires_at BIGINT;
CREATE INDEX backups_expiry ON backups(status, expires_at);

CREATE TABLE backup_windows (
    instance_id   TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    window_end    BIGINT NOT NULL,
    -- pending (claimed, waiting for the instance to be free), starting,
    -- started (backup queued), missed (closed while busy)
    state         TEXT NOT NULL,
    backup_id     TEXT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (instance_id, window_start)
);
