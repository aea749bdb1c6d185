//! Automatic backups and retention.
//!
//! Every tick (time from the injected [`crate::clock::Clock`]):
//! - for each instance with an `auto` policy whose planned window (weekday
//!   and hour in the policy's time zone) contains now, claim the window in
//!   the catalog and queue one `auto` backup; if the instance is busy, the
//!   window stays claimed as `pending` and is tried again next tick;
//! - a window that closed while still pending gets a `failed` auto backup
//!   record with `dcs.08.0008`;
//! - a window that passed entirely while no node ran is logged and skipped;
//! - succeeded auto backups past their expiry lose their files and become
//!   `expired`.

use std::sync::Arc;

use super::Jobs;
use crate::catalog::{CatalogError, NewBackup};
use crate::metrics::WindowOutcome;
use crate::model::{
    BackupFormat, BackupId, BackupPolicy, BackupStatus, BackupType, Instance, JobError, Millis,
};

const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;

/// One planned window, in UTC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: Millis,
    pub end: Millis,
    /// `HH:00-HH+1:00`, the policy's `begin_at`, recorded as `period`.
    pub label: String,
}

/// ISO weekday (Monday = 1 … Sunday = 7) of the day `day_index` days after
/// 1970-01-01, which was a Thursday.
fn iso_weekday(day_index: i64) -> u8 {
    ((day_index + 3).rem_euclid(7) + 1) as u8
}

fn window_on_local_day(p: &BackupPolicy, local_day: i64, hour: u8) -> Option<Window> {
    if !p.backup_at.contains(&iso_weekday(local_day)) {
        return None;
    }
    let offset = i64::from(p.tz_offset_minutes) * 60_000;
    let start = local_day * DAY + i64::from(hour) * HOUR - offset;
    Some(Window {
        start,
        end: start + HOUR,
        label: crate::model::window_label(hour),
    })
}

/// The planned window containing `now`, if any.
pub fn window_at(p: &BackupPolicy, now: Millis) -> Option<Window> {
    if p.backup_type != "auto" {
        return None;
    }
    let hour = p.begin_hour?;
    let local = now + i64::from(p.tz_offset_minutes) * 60_000;
    let day = local.div_euclid(DAY);
    window_on_local_day(p, day, hour).filter(|w| w.start <= now && now < w.end)
}

/// The latest window that closed at or before `now`.
pub fn last_window_before(p: &BackupPolicy, now: Millis) -> Option<Window> {
    if p.backup_type != "auto" {
        return None;
    }
    let hour = p.begin_hour?;
    let local_day = (now + i64::from(p.tz_offset_minutes) * 60_000).div_euclid(DAY);
    (0..9)
        .filter_map(|back| window_on_local_day(p, local_day - back, hour))
        .find(|w| w.end <= now)
}

/// The longest time between two planned windows of an automatic policy
/// (a week for one day a week; three days for Monday, Wednesday and
/// Friday, from Friday to Monday): how long an instance may go without a
/// new backup when every window runs. `None` for a policy that plans
/// nothing.
pub fn period(p: &BackupPolicy) -> Option<Millis> {
    if p.backup_type != "auto" || p.begin_hour.is_none() {
        return None;
    }
    let mut days: Vec<i64> = p
        .backup_at
        .iter()
        .filter(|d| (1..=7).contains(*d))
        .map(|&d| i64::from(d))
        .collect();
    days.sort_unstable();
    days.dedup();
    let first = *days.first()?;
    let gaps = days.windows(2).map(|w| w[1] - w[0]);
    let wrap = first + 7 - days[days.len() - 1];
    gaps.chain([wrap]).max().map(|d| d * DAY)
}

impl Jobs {
    /// One scheduler pass at `now`. `first` also logs windows missed while
    /// no node was running.
    #[tracing::instrument(skip(self))]
    pub async fn schedule_tick(
        self: &Arc<Self>,
        now: Millis,
        first: bool,
    ) -> Result<(), CatalogError> {
        for inst in self.catalog.instances_with_policy().await? {
            let Some(stored) = &inst.policy else { continue };
            let policy = &stored.policy;
            if first {
                if let Some(w) =
                    last_window_before(policy, now).filter(|w| w.start >= stored.updated_at)
                {
                    if self
                        .catalog
                        .record_skipped_window(&inst.id, w.start, w.end, now)
                        .await?
                    {
                        self.metrics.window(WindowOutcome::Skipped);
                        tracing::warn!(instance = %inst.id, window = %w.label, start = w.start,
                            "an automatic backup window passed while the service was down; skipped, not run late");
                    }
                }
            }
            if let Some(w) = window_at(policy, now) {
                self.run_window(&inst, policy, &w, now).await?;
            }
        }
        self.close_missed_windows(now).await?;
        self.verification_tick(now).await?;
        self.expire(now).await
    }

    async fn run_window(
        &self,
        inst: &Instance,
        policy: &BackupPolicy,
        w: &Window,
        now: Millis,
    ) -> Result<(), CatalogError> {
        let row = self
            .catalog
            .claim_window(&inst.id, w.start, w.end, now)
            .await?;
        if row.state != "pending" && row.state != "starting" {
            return Ok(());
        }
        // Only the node that moves the window to `starting` queues its backup.
        if !self
            .catalog
            .move_window(&inst.id, w.start, "pending", "starting", None, now)
            .await?
        {
            return Ok(());
        }
        let id = BackupId::generate();
        let new = NewBackup {
            id: id.clone(),
            instance_id: inst.id.clone(),
            project_id: inst.project_id.clone(),
            backup_type: BackupType::Auto,
            format: BackupFormat::Rdb,
            status: BackupStatus::Waiting,
            period: Some(w.label.clone()),
            remark: String::new(),
            created_at: now,
            error: None,
            keep_for: policy.save_days.map(|d| d * DAY),
        };
        match self.catalog.enqueue_backup(&new).await {
            Ok(_) => {
                self.catalog
                    .move_window(&inst.id, w.start, "starting", "started", Some(&id), now)
                    .await?;
                self.metrics.window(WindowOutcome::Started);
                tracing::info!(instance = %inst.id, backup = %id, window = %w.label, "automatic backup queued");
                self.wake();
            }
            Err(CatalogError::Busy(kind)) => {
                self.catalog
                    .move_window(&inst.id, w.start, "starting", "pending", None, now)
                    .await?;
                tracing::info!(instance = %inst.id, busy = %kind, window = %w.label,
                    "instance busy; the automatic backup waits within its window");
            }
            Err(e) => {
                self.catalog
                    .move_window(&inst.id, w.start, "starting", "pending", None, now)
                    .await?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Windows that closed while their instance stayed busy: recorded as a
    /// failed automatic backup (dcs.08.0008).
    async fn close_missed_windows(&self, now: Millis) -> Result<(), CatalogError> {
        for row in self.catalog.pending_windows_ended(now).await? {
            if !self
                .catalog
                .move_window(&row.instance_id, row.start, "pending", "missed", None, now)
                .await?
            {
                continue;
            }
            self.metrics.window(WindowOutcome::Missed);
            let Some(inst) = self.catalog.instance_any(&row.instance_id).await? else {
                continue;
            };
            let label = inst
                .policy
                .as_ref()
                .and_then(|p| p.policy.begin_hour)
                .map(crate::model::window_label);
            let rec = self
                .catalog
                .insert_backup(&NewBackup {
                    id: BackupId::generate(),
                    instance_id: inst.id.clone(),
                    project_id: inst.project_id.clone(),
                    backup_type: BackupType::Auto,
                    format: BackupFormat::Rdb,
                    status: BackupStatus::Failed,
                    period: label,
                    remark: String::new(),
                    created_at: now,
                    error: Some(JobError::Busy),
                    keep_for: None,
                })
                .await?;
            tracing::warn!(instance = %inst.id, backup = %rec.id,
                "automatic backup window closed while the instance was busy; recorded as failed");
        }
        Ok(())
    }

    /// Removes the files of succeeded backups past their expiry and marks
    /// them `expired`. A backup a restore is reading waits for it.
    async fn expire(&self, now: Millis) -> Result<(), CatalogError> {
        for rec in self.catalog.due_expiries(now, 100).await? {
            if self.catalog.backup_in_use(&rec.id).await? {
                continue;
            }
            match super::retire_backup(self, &rec, BackupStatus::Expired, now).await {
                Ok(true) => {
                    tracing::info!(backup = %rec.id, "automatic backup expired; files deleted");
                }
                Ok(false) => {}
                Err(super::RetireError::Files(e)) => {
                    tracing::warn!(backup = %rec.id, error = %e, "cannot delete an expired backup's files; retrying later");
                }
                Err(super::RetireError::Catalog(e)) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(days: &[u8], hour: u8, tz_minutes: i32) -> BackupPolicy {
        BackupPolicy {
            backup_type: "auto".into(),
            save_days: Some(3),
            period_type: Some("weekly".into()),
            backup_at: days.to_vec(),
            begin_hour: Some(hour),
            tz_offset_minutes: tz_minutes,
            timezone_offset: None,
        }
    }

    /// 2024-03-04 was a Monday.
    const MON_0000_UTC: Millis = 1_709_510_400_000;

    #[test]
    fn weekdays_count_from_monday() {
        assert_eq!(iso_weekday(0), 4, "1970-01-01 was a Thursday");
        assert_eq!(iso_weekday(MON_0000_UTC / DAY), 1);
    }

    #[test]
    fn windows_in_utc() {
        let p = policy(&[1], 2, 0);
        let start = MON_0000_UTC + 2 * HOUR;
        assert_eq!(window_at(&p, start - 1), None);
        let w = window_at(&p, start).unwrap();
        assert_eq!(
            (w.start, w.end, w.label.as_str()),
            (start, start + HOUR, "02:00-03:00")
        );
        assert!(window_at(&p, start + HOUR - 1).is_some());
        assert_eq!(window_at(&p, start + HOUR), None);
        assert_eq!(window_at(&p, start + DAY), None, "Tuesday is not planned");
        assert!(window_at(&p, start + 7 * DAY).is_some());
    }

    #[test]
    fn a_sunday_window_in_one_zone_is_monday_in_utc() {
        // Sunday 22:00–23:00 at UTC−05:00 is Monday 03:00–04:00 UTC.
        let p = policy(&[7], 22, -300);
        let w = window_at(&p, MON_0000_UTC + 3 * HOUR + 1).unwrap();
        assert_eq!(w.start, MON_0000_UTC + 3 * HOUR);
        assert_eq!(
            window_at(&p, MON_0000_UTC - 2 * HOUR),
            None,
            "not Sunday 22:00 UTC"
        );
        // Monday 01:00 at UTC+08:00 is Sunday 17:00 UTC.
        let p = policy(&[1], 1, 480);
        let w = window_at(&p, MON_0000_UTC - 7 * HOUR).unwrap();
        assert_eq!(w.start, MON_0000_UTC - 7 * HOUR);
    }

    #[test]
    fn the_midnight_window_belongs_to_its_starting_day() {
        let p = policy(&[1], 23, 0);
        let w = window_at(&p, MON_0000_UTC + 23 * HOUR + 5).unwrap();
        assert_eq!(w.label, "23:00-00:00");
        assert_eq!(w.end, MON_0000_UTC + DAY);
    }

    #[test]
    fn the_period_is_the_longest_gap_between_planned_days() {
        assert_eq!(period(&policy(&[3], 2, 0)), Some(7 * DAY));
        assert_eq!(period(&policy(&[1, 3, 5], 2, 0)), Some(3 * DAY));
        assert_eq!(period(&policy(&[5, 1, 3, 3], 2, 0)), Some(3 * DAY));
        assert_eq!(period(&policy(&[1, 2, 3, 4, 5, 6, 7], 23, 0)), Some(DAY));
        assert_eq!(period(&policy(&[], 2, 0)), None);
        let manual = BackupPolicy {
            backup_type: "manual".into(),
            ..policy(&[1], 2, 0)
        };
        assert_eq!(period(&manual), None);
    }

    #[test]
    fn last_closed_window() {
        let p = policy(&[1, 4], 2, 0);
        let w = last_window_before(&p, MON_0000_UTC + 10 * DAY).unwrap();
        // Ten days after a Monday is the next Thursday, 00:00: the latest
        // closed window is that week's Monday 02:00.
        assert_eq!(w.start, MON_0000_UTC + 7 * DAY + 2 * HOUR);
        assert!(
            last_window_before(&p, MON_0000_UTC + 2 * HOUR + 30)
                .unwrap()
                .end
                <= MON_0000_UTC + 2 * HOUR + 30
        );
        let manual = BackupPolicy {
            backup_type: "manual".into(),
            ..p
        };
        assert_eq!(window_at(&manual, MON_0000_UTC + 2 * HOUR), None);
    }
}
