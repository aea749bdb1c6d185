-- Test restores (issue 17): a backup loaded into a sandbox and checked.
-- sandbox is 'scratch' (a server the service starts) or the id of an
-- adopted instance marked as a sandbox. detail holds what a crash must
-- undo (sealed like a restore's); mismatch_sample is JSON.
CREATE TABLE verifications (
    id               TEXT PRIMARY KEY,
    backup_id        TEXT NOT NULL,
    instance_id      TEXT NOT NULL,
    project_id       TEXT NOT NULL,
    sandbox          TEXT NOT NULL,
    sample           INTEGER NOT NULL,
    origin           TEXT NOT NULL,
    status           TEXT NOT NULL,
    progress         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL,
    server           TEXT,
    load_ms          INTEGER,
    keys_checked     INTEGER,
    mismatches       INTEGER,
    mismatch_sample  TEXT,
    digest           TEXT,
    error_code       TEXT,
    reason           TEXT,
    detail           TEXT
);
CREATE INDEX verifications_by_backup ON verifications(backup_id, created_at);
CREATE INDEX verifications_by_instance_status ON verifications(instance_id, status, finished_at);

-- Why a backup is no longer trusted to restore (a failed test restore).
ALTER TABLE backups ADD COLUMN verification_failure TEXT;
-- An adopted instance whose data test restores may replace.
ALTER TABLE instances ADD COLUMN sandbox INTEGER NOT NULL DEFAULT 0;
-- The test-restore policy (JSON) of an instance.
ALTER TABLE instances ADD COLUMN verification_policy TEXT;

-- Scheduled test restores: one per planned window, claimed like backups'.
CREATE TABLE verification_windows (
    instance_id      TEXT NOT NULL,
    window_start     INTEGER NOT NULL,
    window_end       INTEGER NOT NULL,
    state            TEXT NOT NULL,
    verification_id  TEXT,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (instance_id, window_start)
);

-- A test restore takes a lane of its own: it never makes a backup or a
-- restore of the same instance wait, and two test restores of one instance
-- (or into one adopted sandbox) never run together.
DROP INDEX jobs_one_active_per_instance;
CREATE UNIQUE INDEX jobs_one_active_per_instance
    ON jobs(instance_id, kind = 'verification') WHERE state <> 'done';
