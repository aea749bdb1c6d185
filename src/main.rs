use std::process::ExitCode;

use clap::Parser;
use dcs_backup::catalog::Catalog;
use dcs_backup::config::{self, Cli, Command, Config, CredentialCommand, DevCommand};
use dcs_backup::dev;
use dcs_backup::model::ProjectId;
use dcs_backup::server;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("DCS_BACKUP_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Credential {
                command: CredentialCommand::Create { project_id, common },
            } => create_credential(&project_id, &common).await,
            Command::Dev {
                command: DevCommand::Seed(args),
            } => dev::seed(&args).await,
            Command::Dev {
                command: DevCommand::Sign(args),
            } => dev::sign(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
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
    let catalog = Catalog::connect(&url).await?;
    let cred = catalog.create_credential(&project).await?;
    println!("{}", server::credential_json(&cred));
    Ok(())
}
