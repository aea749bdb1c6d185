//! Whether adopted instances answer `PING`: one cache behind an instance's
//! `status` (`RUNNING` or `ERROR`) and `dcs_backup_instance_up`.
//!
//! The API probes an instance whose answer is older than two seconds as it
//! is shown. A scrape never probes more than [`PROBES_PER_SCRAPE`]
//! instances (those with the oldest answer first, across concurrent
//! scrapes too) and reports the others' last answer, so a large fleet is
//! covered over several scrapes and a scrape's cost stays bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::catalog::Catalog;
use crate::model::{Instance, InstanceId};
use crate::redis::ConnectOptions;

/// How old an answer the API's `status` accepts.
const STATUS_FRESH: Duration = Duration::from_secs(2);
/// How old an answer a scrape accepts before it probes again.
const SCRAPE_FRESH: Duration = Duration::from_secs(10);
/// Instances one scrape probes at most (and all scrapes at once).
pub const PROBES_PER_SCRAPE: usize = 32;
/// A probe's whole time, name resolution included.
const PROBE_LIMIT: Duration = Duration::from_millis(2500);
/// Answers kept; past this the cache starts again.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
pub(crate) struct Reachability {
    answers: Mutex<HashMap<InstanceId, (bool, Instant)>>,
    scrape_probes: Semaphore,
}

impl Default for Reachability {
    fn default() -> Self {
        Self {
            answers: Mutex::new(HashMap::new()),
            scrape_probes: Semaphore::new(PROBES_PER_SCRAPE),
        }
    }
}

impl Reachability {
    /// Whether `inst` answers, from an answer at most two seconds old or
    /// a probe now.
    pub async fn status(&self, redis: &ConnectOptions, inst: &Instance) -> bool {
        if let Some((alive, at)) = self.answer(&inst.id) {
            if at.elapsed() < STATUS_FRESH {
                return alive;
            }
        }
        self.probe(redis, inst).await
    }

    /// The last answer of each of `ids` (`None`: never probed), after
    /// probing at most [`PROBES_PER_SCRAPE`] of those whose answer is
    /// missing or older than ten seconds, oldest first. Probes run at once
    /// and take at most 2.5 s.
    pub async fn for_scrape(
        &self,
        catalog: &Catalog,
        redis: &ConnectOptions,
        ids: &[&InstanceId],
    ) -> Vec<Option<bool>> {
        let mut stale: Vec<(Option<Instant>, &InstanceId)> = ids
            .iter()
            .map(|id| (self.answer(id).map(|(_, at)| at), *id))
            .filter(|(at, _)| at.is_none_or(|at| at.elapsed() >= SCRAPE_FRESH))
            .collect();
        // Never probed first (None sorts first), then the oldest answer.
        stale.sort_by_key(|(at, _)| *at);
        let mut probes = Vec::new();
        for (_, id) in stale {
            let Ok(permit) = self.scrape_probes.try_acquire() else {
                break;
            };
            probes.push(async move {
                let _permit = permit;
                match catalog.instance_any(id).await {
                    Ok(Some(inst)) => {
                        let _ = tokio::time::timeout(PROBE_LIMIT, self.probe(redis, &inst)).await;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(instance = %id, error = %e, "cannot load an instance to probe it")
                    }
                }
            });
        }
        futures::future::join_all(probes).await;
        ids.iter()
            .map(|id| self.answer(id).map(|(alive, _)| alive))
            .collect()
    }

    fn answer(&self, id: &InstanceId) -> Option<(bool, Instant)> {
        self.answers.lock().ok()?.get(id).copied()
    }

    async fn probe(&self, redis: &ConnectOptions, inst: &Instance) -> bool {
        let opts = ConnectOptions {
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            tls: redis.tls.clone(),
            targets: redis.targets.clone(),
        };
        let c = &inst.connection;
        let alive = match crate::redis::Conn::open(c, &c.host, c.port, &opts).await {
            Ok(mut conn) => matches!(
                conn.cmd(&["PING"]).await,
                Ok(crate::redis::Reply::Simple(_))
            ),
            Err(_) => false,
        };
        if let Ok(mut answers) = self.answers.lock() {
            if answers.len() > MAX_ENTRIES {
                answers.clear();
            }
            answers.insert(inst.id.clone(), (alive, Instant::now()));
        }
        alive
    }
}
