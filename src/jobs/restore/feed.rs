//! Execute by feed: the target loads the RDB from the service playing its
//! master.

use std::fs::File;

use futures::StreamExt;

use super::*;
use crate::redis::feed::FeedEvent;
use crate::redis::RedisError;
use crate::storage::{FileSource, ManifestFile};

/// Per-restore feed secrets: letters and digits only, so that every
/// server version takes them as a `masterauth` value.
const FEED_SECRET_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The addresses a target may connect to the feed from: those its host
/// name resolves to (a target reached by an IP connects from that IP).
async fn target_addresses(node: &NodeAddr) -> Vec<std::net::IpAddr> {
    let mut ips: Vec<std::net::IpAddr> = match node.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((node.host.as_str(), node.port))
            .await
            .map(|a| a.map(|s| s.ip()).collect())
            .unwrap_or_default(),
    };
    ips.sort();
    ips.dedup();
    ips
}

pub(crate) enum FeedError {
    /// Refused before the target was touched: another path may be taken.
    NotPossible(String),
    Failed(JobFailure),
}

impl From<RedisError> for FeedError {
    fn from(e: RedisError) -> Self {
        FeedError::Failed(sync_failure(e))
    }
}

/// Feeds the backup's one RDB file to the target's master.
pub(crate) async fn feed(r: &Restore<'_>) -> Result<(), FeedError> {
    let (jobs, target) = (r.jobs, &r.target);
    let node = &r.topology.shards[0].master;
    let file = r
        .manifest
        .files
        .first()
        .ok_or_else(|| FeedError::NotPossible("the backup has no file".into()))?;
    let progress = &r.progress;
    let Some(server) = jobs.feed.as_ref() else {
        return Err(FeedError::NotPossible("no replication listener".into()));
    };
    let mut c = Conn::open(&target.connection, &node.host, node.port, &jobs.redis).await?;
    // The feed accepts the target only from its own addresses, and only
    // with a secret made for this restore, which the target presents as
    // its masterauth.
    let allowed = target_addresses(node).await;
    if allowed.is_empty() {
        return Err(FeedError::NotPossible(format!(
            "cannot resolve the target's address {}",
            node.host
        )));
    }
    let secret = crate::catalog::random_token(40, FEED_SECRET_ALPHABET);
    let Some(mut registration) = server.register(&secret, allowed) else {
        return Err(FeedError::NotPossible(
            "the replication listener is gone".into(),
        ));
    };
    // What the restore changes on the target, with the values to put back:
    // recorded before the first change, so a crash at any point leaves
    // enough for the next start to undo it.
    let mut changes: Vec<(&str, String)> = Vec::new();
    let mut saved = Vec::new();
    for key in ["masteruser", "masterauth"] {
        match c.cmd(&["CONFIG", "GET", key]).await? {
            // Servers before 6.0 have no masteruser.
            Reply::Array(Some(items)) if items.is_empty() && key == "masteruser" => continue,
            r => match r.config_value() {
                Some(old) => saved.push((key.to_owned(), old)),
                None => {
                    return Err(FeedError::NotPossible(format!(
                        "the target does not report {key}"
                    )))
                }
            },
        }
        let new = if key == "masterauth" {
            secret.clone()
        } else {
            String::new()
        };
        changes.push((key, new));
    }
    // A target with no keys can load straight from the socket; one with
    // data keeps its own setting, so a failed transfer leaves its data.
    let empty = c
        .info("keyspace")
        .await
        .map(|i| i.with_prefix("db").next().is_none())
        .unwrap_or(false);
    if empty {
        if let Some(old) = c
            .cmd(&["CONFIG", "GET", "repl-diskless-load"])
            .await?
            .config_value()
        {
            if old != "on-empty-db" {
                saved.push(("repl-diskless-load".to_owned(), old));
                changes.push(("repl-diskless-load", "on-empty-db".to_owned()));
            }
        }
    }
    let (host, port) = server.advertised();
    let endpoint = format!("{host}:{port}");
    let detail = Detail {
        path: "feed".into(),
        endpoint: Some(endpoint.clone()),
        target: Some(node.to_string()),
        saved_config: saved.clone(),
    };
    let detail_json = serde_json::to_string(&detail).unwrap_or_default();
    if !r
        .save_detail(&detail_json)
        .await
        .map_err(|e| FeedError::Failed(e.into()))?
    {
        return Err(FeedError::Failed(JobFailure::lost()));
    }
    // From here on every exit puts the configuration back.
    for (key, value) in &changes {
        match c.cmd(&["CONFIG", "SET", key, value.as_str()]).await {
            Ok(Reply::Error(e)) if *key == "repl-diskless-load" => {
                tracing::debug!(error = %e, "the target keeps its repl-diskless-load");
            }
            Ok(Reply::Error(e)) => {
                put_back(&mut c, &saved).await;
                return Err(FeedError::NotPossible(format!(
                    "CONFIG SET {key} refused: {e}"
                )));
            }
            Ok(_) => {}
            Err(e) => {
                put_back(&mut c, &saved).await;
                return Err(e.into());
            }
        }
    }
    progress.touched.store(true, Ordering::SeqCst);
    match c
        .cmd(&["REPLICAOF", host.as_str(), &port.to_string()])
        .await?
    {
        Reply::Error(e) => {
            put_back(&mut c, &saved).await;
            return Err(FeedError::NotPossible(format!("REPLICAOF refused: {e}")));
        }
        _ => {
            tracing::info!(target = %node, master = %endpoint, "target now replicates from the service")
        }
    }
    // From here on the target is ours to give back, whatever happens.
    let fed = feed_and_wait(r, &mut registration, &mut c, file).await;
    let freed = release(&mut c).await;
    put_back(&mut c, &saved).await;
    if !freed {
        return Err(FeedError::Failed(sync_failure(
            "could not release the target from replicating",
        )));
    }
    fed.map_err(FeedError::Failed)
}

async fn feed_and_wait(
    r: &Restore<'_>,
    registration: &mut crate::redis::feed::Registration,
    control: &mut Conn,
    file: &ManifestFile,
) -> Result<(), JobFailure> {
    let (jobs, progress) = (r.jobs, &r.progress);
    let connected = tokio::time::timeout(Duration::from_secs(30), registration.events.recv()).await;
    let Ok(Some(FeedEvent::Connected(replica))) = connected else {
        return Err(sync_failure(
            "the target never connected to the service's replication port: check that it \
             reaches --advertise-addr and --replication-listen, and connects from the address \
             it was adopted by",
        ));
    };
    tracing::info!(peer = %replica.peer, "target connected; sending the snapshot");
    let mut link = replica;
    link.begin_full_sync(file.size)
        .await
        .map_err(sync_failure)?;
    let sending = |e: std::io::Error| sync_failure(format!("sending the snapshot: {e}"));
    let (link, sent) = match jobs.store.source(&r.backup.file(&file.name))? {
        FileSource::Local(local) => {
            let f = File::open(&local)
                .map_err(|e| fail(JobError::Storage, format!("opening the snapshot: {e}")))?;
            let progress = Arc::clone(progress);
            link.send_file(f, move |n| {
                progress.done.fetch_add(n, Ordering::Relaxed);
            })
            .await
            .map_err(sending)?
        }
        FileSource::Remote(remote) => {
            let mut stream = remote.stream().await?;
            let mut sent = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| fail(JobError::Storage, e.to_string()))?;
                sent += chunk.len() as u64;
                progress
                    .done
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                link.send(&chunk).await.map_err(sending)?;
            }
            (link, sent)
        }
    };
    if sent != file.size {
        return Err(fail(
            JobError::Storage,
            format!("read {sent} bytes of {}", file.size),
        ));
    }
    // Keep the link alive (and the target's acks drained) until released.
    let _keepalive = link.keep_alive();
    let deadline =
        Instant::now() + Duration::from_secs(120) + Duration::from_secs(file.size / (20 << 20));
    // The target loads at its own pace and moves no byte the watchdog
    // sees: not a stall, but the deadline still holds.
    let _loading = r.lease.meter().waiting();
    let result = loop {
        if r.lease.lost() {
            break Err(JobFailure::lost());
        }
        tokio::select! {
            ev = registration.events.recv() => {
                if let Some(FeedEvent::Connected(_) | FeedEvent::AskedAgain) = ev {
                    break Err(sync_failure("the target could not load the snapshot and asked for it again"));
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        match control.info("replication").await {
            Ok(i) if i.get("master_link_status") == Some("up") => break Ok(()),
            Ok(_) | Err(RedisError::Server(_)) => {}
            Err(e) => break Err(sync_failure(format!("target lost while loading: {e}"))),
        }
        if Instant::now() > deadline {
            break Err(fail(
                JobError::Timeout,
                "the target did not finish loading in time",
            ));
        }
    };
    result
}
