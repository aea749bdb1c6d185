//! The object store holding backup files, through OpenDAL: a local
//! directory (default) or any S3-compatible bucket.
//!
//! Layout: `{project}/{instance}/{backup}/{file}` plus
//! `{project}/{instance}/{backup}/manifest.json`, written last. This module
//! knows nothing about HTTP or the catalog.

use std::path::PathBuf;

use opendal::{services, Operator};

/// Errors of the object store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("object store: {0}")]
    Store(#[from] opendal::Error),
}

/// Where backups are stored, parsed from `--storage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageUrl {
    Fs {
        root: PathBuf,
    },
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: String,
        path_style: bool,
    },
}

impl StorageUrl {
    /// Parses `fs:///absolute/path` or
    /// `s3://BUCKET[/PREFIX]?endpoint=URL&region=R&path_style=true|false`.
    pub fn parse(url: &str) -> Result<Self, StorageError> {
        let bad = |why: &str| StorageError::BadUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        if let Some(path) = url.strip_prefix("fs://") {
            if !path.starts_with('/') {
                return Err(bad("the path must be absolute (fs:///abs/path)"));
            }
            return Ok(Self::Fs {
                root: PathBuf::from(path),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket"));
            }
            let mut endpoint = None;
            let mut region = "us-east-1".to_owned();
            let mut path_style = true;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned();
                match k {
                    "endpoint" => endpoint = Some(v),
                    "region" => region = v,
                    "path_style" => {
                        path_style = match v.as_str() {
                            "true" => true,
                            "false" => false,
                            _ => return Err(bad("path_style must be true or false")),
                        }
                    }
                    "access_key_id" | "secret_access_key" | "session_token" => return Err(bad(
                        "keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, never the URL",
                    )),
                    other => return Err(bad(&format!("unknown parameter {other:?}"))),
                }
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
                endpoint,
                region,
                path_style,
            });
        }
        Err(bad(
            "use fs:///absolute/path or s3://bucket[/prefix]?endpoint=...",
        ))
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Self::Fs { .. })
    }
}

/// The backup store.
#[derive(Clone, Debug)]
pub struct Store {
    op: Operator,
    url: StorageUrl,
}

impl Store {
    /// Builds the store and checks that it answers.
    #[tracing::instrument(skip_all)]
    pub async fn open(url: &StorageUrl) -> Result<Self, StorageError> {
        let op = match url {
            StorageUrl::Fs { root } => {
                std::fs::create_dir_all(root).map_err(|e| StorageError::BadUrl {
                    url: format!("fs://{}", root.display()),
                    why: e.to_string(),
                })?;
                Operator::new(services::Fs::default().root(&root.to_string_lossy()))?.finish()
            }
            StorageUrl::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                path_style,
            } => {
                let mut b = services::S3::default()
                    .bucket(bucket)
                    .root(&format!("/{prefix}"))
                    .region(region)
                    .disable_config_load()
                    .disable_ec2_metadata();
                if let Some(e) = endpoint {
                    b = b.endpoint(e);
                }
                if !path_style {
                    b = b.enable_virtual_host_style();
                }
                if let Ok(k) = std::env::var("AWS_ACCESS_KEY_ID") {
                    b = b.access_key_id(&k);
                }
                if let Ok(k) = std::env::var("AWS_SECRET_ACCESS_KEY") {
                    b = b.secret_access_key(&k);
                }
                if let Ok(t) = std::env::var("AWS_SESSION_TOKEN") {
                    b = b.session_token(&t);
                }
                Operator::new(b)?.finish()
            }
        };
        op.check().await?;
        Ok(Self {
            op,
            url: url.clone(),
        })
    }

    pub fn operator(&self) -> &Operator {
        &self.op
    }

    pub fn url(&self) -> &StorageUrl {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_storage_urls() {
        assert_eq!(
            StorageUrl::parse("fs:///var/backups").unwrap(),
            StorageUrl::Fs {
                root: "/var/backups".into()
            }
        );
        assert!(StorageUrl::parse("fs://relative").is_err());
        assert_eq!(
            StorageUrl::parse("s3://b/some/prefix/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=r&path_style=false")
                .unwrap(),
            StorageUrl::S3 {
                bucket: "b".into(),
                prefix: "some/prefix".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: "r".into(),
                path_style: false
            }
        );
        assert!(StorageUrl::parse("s3://b?secret_access_key=x").is_err());
        assert!(StorageUrl::parse("s3://b?path_style=maybe").is_err());
        assert!(StorageUrl::parse("ftp://x").is_err());
    }
}
