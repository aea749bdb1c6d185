-- Point-in-time recovery (issue 16).
-- A policy per instance; capture runs while `enabled`.
CREATE TABLE pitr_policies (
    instance_id   TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    enabled       BIGINT NOT NULL,
    interval_min  BIGINT NOT NULL,
    keep_days     BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- Which `serve` replica captures an instance: one row per instance, taken
-- when free or when its lease lapsed, renewed by its holder.
CREATE TABLE pitr_leases (
    instance_id   TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    lease_until   BIGINT NOT NULL
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
    repl_offset   BIGINT NOT NULL,
    taken_at      BIGINT NOT NULL,
    ready_at      BIGINT NOT NULL,
    size          BIGINT NOT NULL,
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
    start_offset  BIGINT NOT NULL,
    end_offset    BIGINT NOT NULL,
    first_at      BIGINT NOT NULL,
    last_at       BIGINT NOT NULL,
    start_db      BIGINT NOT NULL,
    end_db        BIGINT NOT NULL,
    data_len      BIGINT NOT NULL,
    size          BIGINT NOT NULL,
    blake3        TEXT NOT NULL,
    object_key    TEXT NOT NULL,
    -- 1 for the first segment after a link resumed (`+CONTINUE`): its
    -- writes were made while no link was up, so their receipt times are
    -- not when the master made them; restorable time restarts after it.
    resumed       BIGINT NOT NULL,
    -- The latest instant the link was known to have received everything
    -- up to end_offset (idle after this segment); at least last_at.
    covered_until BIGINT NOT NULL,
    PRIMARY KEY (instance_id, shard, repl_id, start_offset)
);
CREATE INDEX pitr_segments_by_time ON pitr_segments(instance_id, shard, last_at);

-- A live capture link: every write received up to `covered_at` is in
-- segments ending at `end_offset` of `repl_id`.
CREATE TABLE pitr_links (
    instance_id   TEXT NOT NULL,
    shard         TEXT NOT NULL,
    repl_id       TEXT NOT NULL,
    end_offset    BIGINT NOT NULL,
    covered_at    BIGINT NOT NULL,
    PRIMARY KEY (instance_id, shard)
);

-- A restore to a point in time: its restore record plus the instant and
-- the instance whose history it replays.
CREATE TABLE pitr_restores (
    restore_id          TEXT PRIMARY KEY,
    source_instance_id  TEXT NOT NULL,
    restore_at          BIGINT NOT NULL
);
