-- Signatures of mutating requests already accepted, so a replayed request
-- is refused on every replica sharing the catalog. A row is useless once
-- its signed date is out of the allowed skew (expires_at, ms); expired
-- rows are purged through the expiry index.
CREATE TABLE used_signatures (
    signature   TEXT NOT NULL,
    ak          TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (signature, ak)
);
CREATE INDEX used_signatures_expiry ON used_signatures(expires_at);
