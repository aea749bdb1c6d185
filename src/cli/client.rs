//! Signed HTTP to the service: reads the credentials file, signs each
//! request with [`crate::signing::RequestSigner`], and turns every way a
//! call can fail into one line for the user (a DCS error with its code,
//! a refused key, an unreachable server), never a JSON dump.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use reqwest::Url;
use serde_json::Value;

use super::{CliError, CliResult, ClientOpts};
use crate::model::Secret;
use crate::signing::RequestSigner;

/// Largest answer the client reads from the service (a listing of 1000
/// records is about 500 KiB).
const MAX_ANSWER: usize = 16 << 20;
/// Longest a call may take; a dry run reads the whole backup back first.
const CALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A signed connection to one service, for one project.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// The `Host` header sent and signed.
    host: String,
    project: String,
    ak: String,
    sk: Secret,
    credentials: PathBuf,
    pub json: bool,
}

/// A successful answer's JSON (`Null` when it had no body).
pub struct Answer {
    pub json: Value,
}

impl Answer {
    /// The id a job-starting call answered in `field` (`what` names it in
    /// the error), announced as every command that starts a job does:
    /// without `--wait` the answer (`--json`) or the id is printed and
    /// `None` returned; with it the id is printed (not with `--json`) and
    /// returned, to be followed.
    pub fn started(
        &self,
        client: &Client,
        field: &str,
        what: &str,
        wait: bool,
    ) -> CliResult<Option<String>> {
        let id = self.json[field]
            .as_str()
            .map(one_line)
            .ok_or_else(|| CliError::fail(format!("the service did not answer a {what}")))?;
        if !wait {
            if client.json {
                super::output::json(&self.json);
            } else {
                println!("{id}");
            }
            return Ok(None);
        }
        if !client.json {
            println!("{id}");
        }
        Ok(Some(id))
    }
}

impl Client {
    pub fn new(opts: &ClientOpts) -> CliResult<Self> {
        let base = Url::parse(opts.server.trim_end_matches('/')).map_err(|e| {
            CliError::fail(format!(
                "--server {:?} is not a URL ({e}); e.g. http://127.0.0.1:8080",
                opts.server
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(CliError::fail(format!(
                "--server {:?} must be an http:// or https:// URL with a host",
                opts.server
            )));
        }
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => String::new(),
        };
        let (project, ak, sk) = read_credentials(&opts.credentials)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| CliError::fail(format!("cannot set up HTTP: {e}")))?;
        Ok(Self {
            http,
            base,
            host,
            project,
            ak,
            sk,
            credentials: opts.credentials.clone(),
            json: opts.json,
        })
    }

    /// `/v2/{project}` followed by `rest`.
    pub fn v2(&self, rest: &str) -> String {
        format!("/v2/{}{rest}", self.project)
    }

    /// The server as the user named it, for messages.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// A signed call; any answer but 2xx is an error line.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<&Value>,
    ) -> CliResult<Answer> {
        let body = match body {
            Some(b) => serde_json::to_vec(b)
                .map_err(|e| CliError::fail(format!("cannot write the request: {e}")))?,
            None => Vec::new(),
        };
        let mut retried = false;
        loop {
            let resp = self.send(&method, path, query, &body).await?;
            let status = resp.status().as_u16();
            let bytes = read_capped(resp, MAX_ANSWER)
                .await
                .map_err(|e| self.unreachable(&e))?;
            let json = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                match serde_json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(_) if (200..300).contains(&status) => {
                        return Err(CliError::fail(format!(
                            "{} answered {} with something that is not JSON; is --server a dcs-backup service?",
                            self.server(),
                            status
                        )))
                    }
                    Err(_) => Value::Null,
                }
            };
            if (200..300).contains(&status) {
                return Ok(Answer { json });
            }
            // The same mutating request signed within the same second is
            // refused as a replay: sign it again in the next second.
            if status == 401 && !retried && method != Method::GET && is_reused(&json) {
                retried = true;
                let ms = time::OffsetDateTime::now_utc().millisecond();
                tokio::time::sleep(Duration::from_millis(1010 - u64::from(ms))).await;
                continue;
            }
            return Err(self.service_error(status, &json));
        }
    }

    async fn send(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> CliResult<reqwest::Response> {
        let mut url = self.base.clone();
        url.set_path(path);
        url.set_query(query);
        let headers = RequestSigner {
            ak: &self.ak,
            sk: self.sk.expose(),
        }
        .headers(
            method,
            path,
            query,
            &self.host,
            body,
            time::OffsetDateTime::now_utc(),
        );
        let mut req = self
            .http
            .request(method.clone(), url)
            .timeout(CALL_TIMEOUT)
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send().await.map_err(|e| self.unreachable(&e))
    }

    /// A GET of an unsigned URL (a download link), for streaming.
    pub async fn get_link(&self, link: &str) -> CliResult<reqwest::Response> {
        let url = Url::parse(link)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                CliError::fail("the service answered a download link that is not an http(s) URL")
            })?;
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(resp);
        }
        let bytes = read_capped(resp, 64 << 10).await.unwrap_or_default();
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(self.service_error(status, &json))
    }

    /// One line for a failed call.
    fn service_error(&self, status: u16, json: &Value) -> CliError {
        let code = json["error_code"].as_str();
        let msg = json["error_msg"].as_str().unwrap_or("");
        let ext = json["error_ext_msg"].as_str().filter(|s| !s.is_empty());
        let Some(code) = code else {
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            return CliError::fail(format!(
                "{} answered HTTP {status} {reason} without a DCS error; is --server a dcs-backup service?",
                self.server()
            ));
        };
        let mut line = format!("{} {}", one_line(code), one_line(msg));
        if let Some(ext) = ext {
            line.push_str(&format!(": {}", one_line(ext)));
        }
        line.push_str(&format!(" (HTTP {status})"));
        if status == 401 {
            let hint = match code {
                "DCS.1002" => "the signature's date is too far from the server's clock: check this machine's time".to_owned(),
                _ => format!(
                    "the service refused the access key or secret key in {}",
                    self.credentials.display()
                ),
            };
            line.push_str(&format!(" — {hint}"));
        }
        CliError::fail(line)
    }

    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        let mut cause = String::new();
        let mut src: Option<&dyn std::error::Error> = Some(e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        let what = if e.is_timeout() {
            "timed out talking to".to_owned()
        } else if e.is_connect() {
            "cannot reach".to_owned()
        } else {
            "lost the connection to".to_owned()
        };
        CliError::fail(format!(
            "{what} the service at {}: {} (is `dcs-backup serve` running there? set --server or DCS_BACKUP_SERVER)",
            self.server(),
            one_line(&cause)
        ))
    }
}

fn is_reused(json: &Value) -> bool {
    json["error_msg"]
        .as_str()
        .is_some_and(|m| m.contains("already used"))
}

/// Reads a body, refusing one bigger than `cap`.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > cap {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Text from the service, made safe for one terminal line.
pub fn one_line(s: &str) -> String {
    s.chars()
        .take(300)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn read_credentials(path: &Path) -> CliResult<(String, String, Secret)> {
    let hint = "give --credentials FILE or DCS_BACKUP_CREDENTIALS (the file `dcs-backup serve` writes on first start)";
    let meta = std::fs::metadata(path).map_err(|e| {
        CliError::fail(format!(
            "cannot read credentials from {}: {e}; {hint}",
            path.display()
        ))
    })?;
    if meta.len() > 64 << 10 {
        return Err(CliError::fail(format!(
            "{} is too big to be a credentials file",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::fail(format!(
            "cannot read credentials from {}: {e}; {hint}",
            path.display()
        ))
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|_| {
        CliError::fail(format!(
            "{} is not JSON of the form {{\"project_id\",\"ak\",\"sk\"}}",
            path.display()
        ))
    })?;
    let field = |k: &str| -> CliResult<String> {
        v[k].as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| CliError::fail(format!("{} has no \"{k}\"", path.display())))
    };
    let project = field("project_id")?;
    if crate::model::ProjectId::parse(&project).is_none() {
        return Err(CliError::fail(format!(
            "{} has an invalid \"project_id\"",
            path.display()
        )));
    }
    Ok((project, field("ak")?, Secret::new(field("sk")?)))
}
