-- Point-in-time recovery (issue 16).
-- A policy per instance; capture runs while `enabled`.
CREATE TABLE pitr_policies (
    instance_id   TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    enabled       INTEGER NOT NULL,
    interval_min  INTEGER NOT NULL,
    keep_days     INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Which `serve` replica captures an instance: one row per instance, taken
-- when free or when its lease lapsed, renewed by its holder.
CREATE TABLE pitr_leases (
    instance_id   TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    lease_until   INTEGER NOT NULL
);

-- A base: a stored RDB of one shard standing at (repl_id, repl_offset).
-- `shard` names the shard by its master's address; `ready_at` is the first
-- instant whose writes all follow the base in the log.
CREATE TABLE pitr_bases (
    id            TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL,
    shard         TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    repl_id       TEXT NOT NULL,
    repl_offset   INTEGER NOT NULL,
    taken_at      INTEGER NOT NULL,
    ready_at      INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    manifest      TEXT NOT NULL
);
CREATE INDEX pitr_bases_by_instance ON pitr_bases(instance_id, shard, taken_at);

-- A log segment: stream bytes [start_offset, end_offset) of one history,
-- received between first_at and last_at; visible once its row exists
-- (the object is written first).
CREATE TABLE pitr_segments (
    instance_id   TEXT NOT NULL,
    shard         TEXT NOT NULL,
    repl_id       TEXT NOT NULL,
    start_offset  INTEGER NOT NULL,
    end_offset    INTEGER NOT NULL,
    first_at      INTEGER NOT NULL,
    last_at       INTEGER NOT NULL,
    start_db      INTEGER NOT NULL,
    end_db        INTEGER NOT NULL,
    data_len      INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    blake3        TEXT NOT NULL,
    object_key    TEXT NOT NULL,
    -- 1 for the first segment after a link resumed (`+CONTINUE`): its
    -- writes were made while no link was up, so their receipt times are
    -- not when the master made them; restorable time restarts after it.
    resumed       INTEGER NOT NULL,
    -- The latest instant the link was known to have received everything
    -- up to end_offset (idle after this segment); at least last_at.
    covered_until INTEGER NOT NULL,
    PRIMARY KEY (instance_id, shard, repl_id, start_offset)
);
CREATE INDEX pitr_segments_by_time ON pitr_segments(instance_id, shard, last_at);

-- A live capture link: every write received up to `covered_at` is in
-- segments ending at `end_offset` of `repl_id`.
CREATE TABLE pitr_links (
    instance_id   TEXT NOT NULL,
    shard         TEXT NOT NULL,
    repl_id       TEXT NOT NULL,
    end_offset    INTEGER NOT NULL,
    covered_at    INTEGER NOT NULL,
    PRIMARY KEY (instance_id, shard)
);

-- A restore to a point in time: its restore record plus the instant and
-- the instance whose history it replays.
CREATE TABLE pitr_restores (
    restore_id          TEXT PRIMARY KEY,
    source_instance_id  TEXT NOT NULL,
    restore_at          INTEGER NOT NULL
);
