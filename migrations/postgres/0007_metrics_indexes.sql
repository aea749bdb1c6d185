-- GET /metrics reads, for every live instance, its newest succeeded and
-- failed backup and restore (MAX(updated_at) per instance and status):
-- with these indexes each is one index probe, whatever the history.
CREATE INDEX backups_by_instance_status ON backups(instance_id, status, updated_at);
CREATE INDEX restores_by_instance_status ON restores(instance_id, status, updated_at);
