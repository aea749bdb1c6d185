use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use dcs_backup::catalog::Catalog;
use dcs_backup::config::{
    self, Cli, Command, Config, CredentialCommand, DevCommand, LogFormat, RotateArgs,
    SecretsCommand,
};
use dcs_backup::dev;
use dcs_backup::model::ProjectId;
use dcs_backup::server;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Everything this process creates (data dir, catalog and its WAL,
    // key and credential files, backup files through OpenDAL) is
    // owner-only.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Client(command) => Ok(Some(dcs_backup::cli::run(command).await)),
            Command::Serve(args) => serve(*args).await.map(|()| None),
            Command::Credential {
                command: CredentialCommand::Create { project_id, common },
            } => create_credential(&project_id, &common).await.map(|()| None),
            Command::Secrets {
                command: SecretsCommand::Rotate(args),
            } => rotate_secrets(&args).await.map(|()| None),
            Command::Dev {
                command: DevCommand::Seed(args),
            } => dev::seed(&args).await.map(|()| None),
            Command::Dev {
                command: DevCommand::Sign(args),
            } => dev::sign(&args).map(|()| None),
        }
    });
    match result {
        // The client prints its own errors and picks its exit code.
        Ok(Some(code)) => code,
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: text, coloured only on a terminal (a journal or a
/// log file gets no escape codes), or JSON lines whose fields include the
/// ids of the spans an event is in (`job_id`, `instance_id`, …).
fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("DCS_BACKUP_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init();
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
}

async fn serve(args: config::ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_serve_args(&args)?;
    let app = server::prepare(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        database = %server::redact_url(&config.database_url),
        storage = ?config.storage,
        "dcs-backup serving"
    );
    server::run(listener, app, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn create_credential(
    project: &str,
    common: &config::CommonArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let project = ProjectId::parse(project)
        .ok_or("invalid project id: use 1-64 characters of [A-Za-z0-9_-]")?;
    let (data_dir, url) = config::load_common(common)?;
    std::fs::create_dir_all(&data_dir)?;
    server::owner_only(&data_dir, 0o700);
    let catalog = Catalog::connect(&url).await?;
    let cred = catalog.create_credential(&project).await?;
    println!("{}", server::credential_json(&cred));
    Ok(())
}

/// `secrets rotate`: a new key for instance passwords, every password
/// re-encrypted with it in one transaction. The key file holds every key
/// some row needs at every moment: new and old keys while rows change,
/// then only the new one. Under `DCS_BACKUP_SECRET_KEY` the new key is
/// printed for the operator to install on every replica.
async fn rotate_secrets(args: &RotateArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (data_dir, url) = config::load_common(&args.common)?;
    std::fs::create_dir_all(&data_dir)?;
    server::owner_only(&data_dir, 0o700);
    let env_key = config::secret_key_from_env();
    // The key the service uses must exist: a fresh one opens no row.
    let keys = dcs_backup::secrets::SecretKeys::open_existing(
        &data_dir,
        env_key.as_ref().map(|k| k.expose()),
    )
    .map_err(|e| format!("{e} (give the service's --data-dir, or DCS_BACKUP_SECRET_KEY)"))?;
    let catalog = Catalog::connect(&url).await?;
    let rotation = dcs_backup::secrets::Rotation::begin(&keys)?;
    let mut count = 0;
    // A running service may have sealed a row with an old key while the
    // first pass ran (it reads the key file before sealing, so not after
    // the file changed); passes repeat until none is left.
    for _ in 0..10 {
        let n = catalog.reseal_passwords(&rotation.keys).await?;
        count += n;
        if n == 0 {
            break;
        }
    }
    let key_id = rotation.new_key_id().to_owned();
    let key_hex = rotation.new_key_hex();
    let file = keys.file().map(|p| p.display().to_string());
    let wrote_file = rotation.finish()?;
    tracing::info!(key_id = %key_id, passwords = count, "instance passwords re-encrypted with a new key");
    if args.links {
        rotate_links(&catalog).await?;
    }
    let out = if wrote_file {
        serde_json::json!({"key_id": key_id, "passwords_reencrypted": count, "key_file": file, "links_rotated": args.links})
    } else {
        serde_json::json!({"key_id": key_id, "passwords_reencrypted": count, "secret_key": key_hex, "links_rotated": args.links})
    };
    println!("{out}");
    catalog.close().await;
    Ok(())
}

/// `secrets rotate --links`: a new key for download links, which makes
/// every link handed out before invalid.
async fn rotate_links(catalog: &Catalog) -> Result<(), Box<dyn std::error::Error>> {
    catalog.rotate_link_key().await?;
    Ok(())
}
