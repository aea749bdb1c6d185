-- A partial restore's filter ({dbs, key_patterns, types} as JSON); NULL for
-- a restore of the whole backup.
ALTER TABLE restores ADD COLUMN filter TEXT;
