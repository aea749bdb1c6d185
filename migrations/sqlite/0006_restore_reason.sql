-- A restore's crash-recovery state (detail) and its outcome are apart:
-- path says how the data went in, reason says in words why it failed.
ALTER TABLE restores ADD COLUMN path TEXT;
ALTER TABLE restores ADD COLUMN reason TEXT;
