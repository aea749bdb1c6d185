//! What the API's guards keep in the catalog, so that every replica
//! sharing it agrees: signatures of mutating requests already accepted
//! (replays are refused), the key download links are signed with, and
//! instances looked up whether deleted or not (a deleted instance's backups
//! stay listable and deletable by their project).

use super::{on_db, Catalog, InstanceRow, Result, ALNUM, INSTANCE_COLUMNS};
use crate::model::{Instance, InstanceId, Millis, ProjectId};

const LINK_KEY: &str = "link_signing_key";

fn fresh_link_key() -> String {
    super::random_token(48, ALNUM)
}

impl Catalog {
    /// Records the first use of a request signature; `false` if it was
    /// already used (by this node or any other). `expires_at` is when the
    /// signed date leaves the allowed skew, after which the row may go.
    pub async fn remember_signature(
        &self,
        ak: &str,
        signature: &str,
        expires_at: Millis,
    ) -> Result<bool> {
        let inserted = on_db!(&self.db, pool => sqlx::query(
            "INSERT INTO used_signatures (signature, ak, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (signature, ak) DO NOTHING")
            .bind(signature)
            .bind(ak)
            .bind(expires_at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(inserted == 1)
    }

    /// Removes signatures whose date is out of the skew window anyway
    /// (a range of the `used_signatures_expiry` index). Returns how many.
    pub async fn purge_used_signatures(&self, now: Millis) -> Result<u64> {
        let n = on_db!(&self.db, pool => sqlx::query("DELETE FROM used_signatures WHERE expires_at < $1")
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n)
    }

    /// The key download links of the local store are signed with, created
    /// on first use; shared by every replica.
    pub async fn link_key(&self) -> Result<String> {
        self.setting_or_init(LINK_KEY, fresh_link_key).await
    }

    /// Replaces the link-signing key: every link signed before stops
    /// working, on every replica within the API's key cache (seconds).
    /// Returns nothing; the new key is never shown.
    pub async fn rotate_link_key(&self) -> Result<()> {
        on_db!(&self.db, pool => sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(LINK_KEY)
            .bind(fresh_link_key())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The project's instance whether deleted or not, with whether it is
    /// deleted: for the routes that still serve a deleted instance's backups.
    pub async fn instance_including_deleted(
        &self,
        project: &ProjectId,
        id: &InstanceId,
    ) -> Result<Option<(Instance, bool)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            inst: InstanceRow,
            deleted_at: Option<i64>,
        }
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS}, deleted_at FROM instances WHERE id = $1 AND project_id = $2"
        );
        let row: Option<Row> = on_db!(&self.db, pool =>
            sqlx::query_as(&sql).bind(id.as_str()).bind(project.as_str()).fetch_optional(pool).await)?;
        row.map(|r| Ok((r.inst.into_instance(self.keys())?, r.deleted_at.is_some())))
            .transpose()
    }
}
