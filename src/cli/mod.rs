//! The operator CLI. Every command works directly on the database; failures print one line
//! (`error: …`) on stderr and exit with a non-zero status. `--json` prints data as JSON.

mod apps;
mod connections;
mod identity;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;

pub use identity::{
    AdminCommand, AuditCommand, DomainCommand, EnforcementCommand, KeysCommand, OrgCommand,
    RoleCommand, ScimTokenCommand, UserCommand,
};

#[derive(Parser, Debug)]
#[command(
    name = "gatehouse",
    version,
    about = "Enterprise SSO and SCIM in front of any web app"
)]
pub struct Cli {
    /// Optional TOML configuration file (environment variables override it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the server (the default command).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Organizations (tenants).
    #[command(subcommand)]
    Org(OrgCommand),
    /// An org's e-mail domains.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// SSO enforcement of an org.
    #[command(subcommand)]
    Enforcement(EnforcementCommand),
    /// App roles and group→role mappings.
    #[command(subcommand)]
    Role(RoleCommand),
    /// SCIM bearer tokens.
    #[command(subcommand, name = "scim-token")]
    ScimToken(ScimTokenCommand),
    /// Users of an org.
    #[command(subcommand)]
    User(UserCommand),
    /// Instance admins (operators).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// An org's break-glass accounts (password + TOTP at /sso/breakglass, even when SSO is
    /// required and the IdP is down).
    #[command(subcommand)]
    Breakglass(identity::BreakglassCommand),
    /// Setup links for an org's IT admin, who has no account (SSO, SCIM, domains).
    #[command(subcommand, name = "setup-link")]
    SetupLink(identity::SetupLinkCommand),
    /// Signing keys (SAML SP certificate, identity JWT).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// SSO connections (SAML).
    #[command(subcommand)]
    Connection(connections::ConnectionCommand),
    /// Apps that sign users in with OpenID Connect (gatehouse is their OpenID Provider).
    #[command(subcommand)]
    App(apps::AppCommand),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration with secrets masked.
    Check,
}

pub fn main() -> ExitCode {
    openssl::init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The whole cause chain on one line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn load_settings(cli: &Cli) -> anyhow::Result<Settings> {
    let (settings, warnings) = Settings::load(cli.config.as_deref())?;
    for w in warnings {
        eprintln!("{w}");
    }
    Ok(settings)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = load_settings(&cli)?;
    let json = cli.json;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Migrate => {
            crate::telemetry::init(settings.log_format, &settings.log);
            let (db, _) = crate::startup::prepare(&settings)?;
            println!("migrations applied ({})", db.backend().name());
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            print!("{}", settings.render_masked());
            Ok(())
        }
        Command::Connection(c) => {
            crate::telemetry::init(settings.log_format, "warn");
            let (db, key) = crate::startup::prepare(&settings)?;
            connections::run(&settings, &db, &key, c, json, crate::clock::now())
        }
        other => {
            // Operator commands log only warnings: their output is the data.
            crate::telemetry::init(settings.log_format, "warn");
            identity::run(&settings, other, json)
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    crate::telemetry::init(settings.log_format, &settings.log);
    actix_web::rt::System::new().block_on(async move {
        let started = std::time::Instant::now();
        let public_url = settings.public_url.clone();
        let app = crate::startup::Application::build(settings).await?;
        tracing::info!(
            port = app.port(),
            public_url = %public_url,
            startup_ms = started.elapsed().as_millis() as u64,
            "gatehouse ready"
        );
        app.run_until_stopped().await?;
        Ok(())
    })
}
