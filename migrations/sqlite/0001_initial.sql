-- Catalog schema, SQLite flavour. Keep in step with ../postgres/0001_initial.sql.
CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);

CREATE TABLE credentials (
    ak          TEXT PRIMARY KEY,
    sk          TEXT NOT NULL,
    project_id  TEXT NOT NULL REFERENCES projects(id),
    created_at  INTEGER NOT NULL
);

-- Server-wide values that every replica must share (link-signing key, ...).
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE instances (
    id                 TEXT PRIMARY KEY,
    project_id         TEXT NOT NULL REFERENCES projects(id),
    name               TEXT NOT NULL,
    description        TEXT NOT NULL,
    host               TEXT NOT NULL,
    port               INTEGER NOT NULL,
    username           TEXT,
    password           TEXT,
    tls                INTEGER NOT NULL,
    topology           TEXT NOT NULL,
    policy             TEXT,
    policy_id          TEXT,
    policy_created_at  INTEGER,
    policy_updated_at  INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    deleted_at         INTEGER
);
CREATE INDEX instances_by_project ON instances(project_id, created_at);

-- seq numbers an instance's records 1, 2, 3, ... with created_at strictly
-- increasing along seq, so a page or a count is two index probes.
CREATE TABLE backups (
    id            TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL,
    project_id    TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    name          TEXT NOT NULL,
    backup_type   TEXT NOT NULL,
    format        TEXT NOT NULL,
    status        TEXT NOT NULL,
    progress      INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    period        TEXT,
    remark        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    execution_at  INTEGER,
    updated_at    INTEGER NOT NULL,
    error_code    TEXT,
    manifest      TEXT
);
CREATE UNIQUE INDEX backups_by_instance_seq ON backups(instance_id, seq);
CREATE INDEX backups_by_instance_time ON backups(instance_id, created_at);
CREATE INDEX backups_by_type_status ON backups(backup_type, status, created_at);

CREATE TABLE restores (
    id                    TEXT PRIMARY KEY,
    instance_id           TEXT NOT NULL,
    project_id            TEXT NOT NULL,
    seq                   INTEGER NOT NULL,
    backup_id             TEXT NOT NULL,
    backup_name           TEXT NOT NULL,
    backup_remark         TEXT NOT NULL,
    source_instance_id    TEXT NOT NULL,
    source_instance_name  TEXT NOT NULL,
    name                  TEXT NOT NULL,
    remark                TEXT NOT NULL,
    status                TEXT NOT NULL,
    progress              INTEGER NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    error_code            TEXT,
    detail                TEXT
);
CREATE UNIQUE INDEX restores_by_instance_seq ON restores(instance_id, seq);
CREATE INDEX restores_by_instance_time ON restores(instance_id, created_at);

-- The work queue. A job is claimed by setting owner and lease_until; a
-- runner that dies lets its lease lapse and the job is taken up again.
-- At most one unfinished job per instance: the index below is the lock.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    instance_id  TEXT NOT NULL,
    record_id    TEXT NOT NULL,
    state        TEXT NOT NULL,
    owner        TEXT,
    lease_until  INTEGER,
    attempts     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX jobs_one_active_per_instance ON jobs(instance_id) WHERE state <> 'done';
CREATE INDEX jobs_by_state ON jobs(state, created_at);
