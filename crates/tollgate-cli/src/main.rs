//! `tollgate`: admin CLI over the control plane's gRPC API, and `tollgate dev`
//! (control plane + data plane + built-in mock provider in one process).

mod admin;
mod audit;
mod billing;
mod cache;
mod client;
mod dev;
mod dp_group;
mod guardrail;
mod incident;
mod limit;
mod output;
mod route;
mod usage;
mod user;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tollgate",
    version,
    long_version = env!("TOLLGATE_LONG_VERSION"),
    about = "Tollgate AI gateway: admin CLI and local dev gateway"
)]
struct Cli {
    /// Control-plane admin URL (default: <data-dir>/cp.url, else http://127.0.0.1:7400).
    #[arg(long, global = true, env = "TOLLGATE_CP_URL")]
    cp: Option<String>,
    /// PEM file of the CA certificate(s) an https:// control plane's
    /// certificate is verified against (default: the public web PKI roots).
    #[arg(long, global = true, env = "TOLLGATE_CP_CA_FILE")]
    cp_ca_file: Option<PathBuf>,
    /// Operator token (default: <data-dir>/admin.token).
    #[arg(
        long,
        global = true,
        env = "TOLLGATE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Directory of the local gateway's state (`tollgate dev` writes it).
    #[arg(
        long,
        global = true,
        env = "TOLLGATE_DATA_DIR",
        default_value = ".tollgate"
    )]
    data_dir: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a local gateway: control plane (SQLite in --data-dir), data plane and
    /// built-in mock provider, with a demo tenant and key.
    Dev(dev::DevArgs),
    /// Tenants.
    #[command(subcommand)]
    Tenant(admin::TenantCmd),
    /// Provider credentials (bring your own key).
    #[command(subcommand)]
    Provider(admin::ProviderCmd),
    /// Models exposed to callers.
    #[command(subcommand)]
    Model(admin::ModelCmd),
    /// Routes: a model's targets (priority groups, weights) and policy.
    #[command(subcommand)]
    Route(route::RouteCmd),
    /// Provider credentials taken out of rotation after a 401/403.
    #[command(subcommand)]
    Health(route::HealthCmd),
    /// Caller API keys.
    #[command(subcommand)]
    Key(admin::KeyCmd),
    /// Guardrail policies: keyword/regex deny lists, PII, limits, webhooks.
    #[command(subcommand)]
    Guardrail(guardrail::GuardrailCmd),
    /// Calls, tokens and cost per model (and key); `usage query|requests|export`.
    Usage(admin::UsageArgs),
    /// Response cache policies of a tenant, its models and its keys.
    #[command(subcommand)]
    Cache(cache::CacheCmd),
    /// Rate limits (RPS/RPM/RPD, TPM/TPD, concurrency) and tiers.
    #[command(subcommand)]
    Limit(limit::LimitCmd),
    /// Config version and connected data planes.
    Status,
    /// Users who sign in to the dashboard and admin API.
    #[command(subcommand)]
    User(user::UserCmd),
    /// Incidents on the public status page (operator only).
    #[command(subcommand)]
    Incident(incident::IncidentCmd),
    /// Billing: prices, balances, top-ups, statements, codes (billing.rs).
    #[command(flatten)]
    Billing(billing::BillingCmd),
    /// Data-plane groups and registration tokens (self-hosted data planes).
    #[command(subcommand)]
    DpGroup(dp_group::DpGroupCmd),
    /// Audit log of admin changes: who changed what, when.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Dev(args) = cli.command {
        return dev::run(args, cli.data_dir).await;
    }
    let target =
        client::Target::resolve(cli.cp, cli.token, &cli.data_dir)?.with_ca_file(cli.cp_ca_file);
    let mut admin = target.connect().await?;
    match cli.command {
        Command::Dev(_) => Ok(()),
        Command::Tenant(c) => admin::tenant(&mut admin, c, cli.json).await,
        Command::Provider(c) => admin::provider(&mut admin, c, cli.json).await,
        Command::Model(c) => admin::model(&mut admin, c, cli.json).await,
        Command::Route(c) => route::route(&mut admin, c, cli.json).await,
        Command::Health(c) => route::health(&mut admin, c, cli.json).await,
        Command::Key(c) => admin::key(&mut admin, c, cli.json).await,
        Command::Guardrail(c) => guardrail::guardrail(&mut admin, c, cli.json).await,
        Command::Usage(a) => admin::usage(&mut admin, a, cli.json).await,
        Command::Cache(c) => cache::cache(&mut admin, c, cli.json).await,
        Command::Limit(c) => limit::limit(&mut admin, c, cli.json).await,
        Command::Status => admin::status(&mut admin, cli.json).await,
        Command::User(c) => user::user(&mut admin, c, cli.json).await,
        Command::Billing(c) => billing::run(&mut admin, c, cli.json).await,
        Command::DpGroup(c) => dp_group::dp_group(&mut admin, c, cli.json).await,
        Command::Incident(c) => incident::incident(&mut admin, c, cli.json).await,
        Command::Audit(c) => audit::audit(&mut admin, c, cli.json).await,
    }
}
