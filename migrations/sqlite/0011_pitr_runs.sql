-- Runs of PITR log segments (issue 16).
-- A run: consecutive segments of one shard, in receipt order, each
-- starting where the previous ends, in the same history, none after a
-- resume. Kept with every segment inserted or removed, in the same
-- transaction, so the periods and the restore's pick read a handful of
-- rows, not a week of 250 ms segments.
-- tail_first_at/tail_start: the receipt-order key (first_at, start_offset)
-- of the run's last segment; a new segment extends the shard's newest run.
CREATE TABLE pitr_runs (
    instance_id   TEXT NOT NULL,
    shard         TEXT NOT NULL,
    repl_id       TEXT NOT NULL,
    start_offset  INTEGER NOT NULL,
    end_offset    INTEGER NOT NULL,
    first_at      INTEGER NOT NULL,
    last_at       INTEGER NOT NULL,
    tail_first_at INTEGER NOT NULL,
    tail_start    INTEGER NOT NULL,
    resumed       INTEGER NOT NULL,
    covered_until INTEGER NOT NULL,
    data_len      INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    segments      INTEGER NOT NULL,
    PRIMARY KEY (instance_id, shard, repl_id, start_offset)
);
CREATE INDEX pitr_runs_by_tail ON pitr_runs(instance_id, shard, tail_first_at, tail_start);

-- The runs of the segments already stored.
INSERT INTO pitr_runs (instance_id, shard, repl_id, start_offset, end_offset, first_at, last_at,
    tail_first_at, tail_start, resumed, covered_until, data_len, size, segments)
SELECT instance_id, shard, repl_id, MIN(start_offset), MAX(end_offset), MIN(first_at), MAX(last_at),
    MAX(first_at), MAX(start_offset), MAX(resumed), MAX(covered_until), SUM(data_len), SUM(size), COUNT(*)
FROM (
    SELECT *, SUM(brk) OVER (PARTITION BY instance_id, shard ORDER BY first_at, start_offset
        ROWS UNBOUNDED PRECEDING) AS run
    FROM (
        SELECT instance_id, shard, repl_id, start_offset, end_offset, first_at, last_at, resumed,
            covered_until, data_len, size,
            CASE WHEN resumed <> 0
                OR LAG(end_offset) OVER w IS NULL OR LAG(end_offset) OVER w <> start_offset
                OR LAG(repl_id) OVER w <> repl_id THEN 1 ELSE 0 END AS brk
        FROM pitr_segments
        WINDOW w AS (PARTITION BY instance_id, shard ORDER BY first_at, start_offset)
    ) a
) r
GROUP BY instance_id, shard, repl_id, run;
