//! `tollgate dev`: a complete local gateway in one process — the control plane
//! on an embedded SQLite file, a data plane synced from it over gRPC, and the
//! built-in mock provider — seeded with a demo tenant, models and caller key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use tonic::Code;

use tollgate_proto::admin::v1 as pb;

use crate::client::{status_error, Admin, Target};

/// Tenant, provider and models the dev gateway creates on first start.
const DEMO_TENANT: &str = "demo";
const DEMO_PROVIDER: &str = "mock";
const DEMO_MODELS: [&str; 2] = ["mock-small", "mock-large"];
const DEMO_KEY_NAME: &str = "demo";
/// The demo key is kept here (0600) so every `tollgate dev` start can print
/// it; production keys are only ever shown once.
const DEMO_KEY_FILE: &str = "demo.key";
/// The demo tenant's owner, for signing in to the dashboard.
const DEMO_OWNER_EMAIL: &str = "owner@demo.local";
/// Its generated password, kept here (0600) like the demo key.
const DEMO_PASSWORD_FILE: &str = "demo.password";

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Admin API (gRPC + gRPC-web) address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7400")]
    admin_listen: SocketAddr,
    /// Proxy (OpenAI API) address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7480")]
    proxy_listen: SocketAddr,
    /// Built dashboard to serve on the admin port (default: dashboard/dist
    /// when it holds a build).
    #[arg(long, env = "TOLLGATE_DASHBOARD_DIR")]
    dashboard_dir: Option<PathBuf>,
}

pub async fn run(args: DevArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    init_logging();
    step(&format!(
        "starting the control plane (SQLite in {})",
        data_dir.display()
    ));
    let mut cp_config = tollgate_cp::ControlPlaneConfig::new(&data_dir);
    cp_config.listen = args.admin_listen;
    cp_config.dashboard_dir = args.dashboard_dir;
    let cp = tollgate_cp::start(cp_config)
        .await
        .context("the control plane did not start")?;
    let target = Target::resolve(
        Some(cp.url.clone()),
        Some(cp.admin_token.clone()),
        &data_dir,
    )?;
    let mut admin = target.connect().await?;

    step("seeding the demo tenant, mock provider, models and key");
    let demo_key = seed(&mut admin, &data_dir).await?;
    let demo_password = demo_owner(&mut admin, &data_dir).await?;

    step("starting the data plane and waiting for its first config");
    let dp_config = tollgate_dp::DataPlaneConfig::new(
        args.proxy_listen,
        tollgate_dp::ConfigSourceSpec::Cp {
            url: cp.url.clone(),
            token: cp.dp_token.clone(),
        },
    )
    .with_data_dir(data_dir.join("dp"))
    .with_node_id("dev-dp");
    let dp = tollgate_dp::prepare(dp_config).context("the data plane did not start")?;
    let proxy_url = dp.url.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let dp_thread = std::thread::Builder::new()
        .name("tollgate-dp".into())
        .spawn(move || dp.run(stop_rx))
        .context("cannot start the data-plane thread")?;

    wait_until_serving(&proxy_url, &demo_key).await?;

    let exe = display_exe();
    println!();
    println!("Tollgate dev gateway is running.");
    println!();
    println!("  Proxy (OpenAI API)   {proxy_url}/v1");
    if cp.dashboard_dir.is_some() {
        println!("  Dashboard            {}/", cp.url);
    } else {
        println!(
            "  Dashboard            not built (cd dashboard && npm ci && npm run build), then restart"
        );
    }
    println!("  Admin API (gRPC)     {}", cp.url);
    println!("  Demo tenant          {DEMO_TENANT}");
    println!("  Demo key             {demo_key}");
    println!("  Dashboard sign-in    {DEMO_OWNER_EMAIL} / {demo_password}");
    println!(
        "  Models               {} (built-in mock provider)",
        DEMO_MODELS.join(", ")
    );
    println!();
    println!("Use it from the OpenAI SDK or curl:");
    println!();
    println!("  export OPENAI_BASE_URL={proxy_url}/v1");
    println!("  export OPENAI_API_KEY={demo_key}");
    println!("  curl -s $OPENAI_BASE_URL/chat/completions -H \"Authorization: Bearer $OPENAI_API_KEY\" \\");
    println!("       -H 'content-type: application/json' \\");
    println!("       -d '{{\"model\":\"mock-small\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'");
    println!();
    println!(
        "Admin CLI (reads {} and {} from here):",
        data_dir.join("cp.url").display(),
        data_dir.join("admin.token").display()
    );
    println!("  {exe} tenant list");
    println!("  {exe} usage --tenant {DEMO_TENANT}");
    println!();
    println!("Press Ctrl-C to stop.");

    wait_for_stop_signal().await;
    eprintln!("stopping…");
    let _ = stop_tx.send(true);
    let joined = tokio::task::spawn_blocking(move || dp_thread.join()).await;
    match joined {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("data plane stopped with an error: {e:#}"),
        Ok(Err(_)) | Err(_) => eprintln!("data plane thread ended abnormally"),
    }
    cp.shutdown().await.context("control plane shutdown")?;
    eprintln!("stopped.");
    Ok(())
}

fn step(what: &str) {
    eprintln!("tollgate dev: {what}…");
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// How to invoke this binary again, relative to the working directory when
/// possible.
fn display_exe() -> String {
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().ok();
    match (exe, cwd) {
        (Some(e), Some(c)) => match e.strip_prefix(&c) {
            Ok(rel) => format!("./{}", rel.display()),
            Err(_) => e.display().to_string(),
        },
        _ => "tollgate".into(),
    }
}

/// Creates what is missing of the demo setup and returns the demo key.
async fn seed(admin: &mut Admin, data_dir: &Path) -> anyhow::Result<String> {
    match admin
        .tenants
        .get_tenant(pb::GetTenantRequest {
            tenant: DEMO_TENANT.into(),
        })
        .await
    {
        Ok(_) => {}
        Err(s) if s.code() == Code::NotFound => {
            admin
                .tenants
                .create_tenant(pb::CreateTenantRequest {
                    name: DEMO_TENANT.into(),
                })
                .await
                .map_err(status_error)?;
        }
        Err(s) => return Err(status_error(s)),
    }
    let providers = admin
        .providers
        .list_providers(pb::ListProvidersRequest {
            tenant: DEMO_TENANT.into(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .providers;
    if !providers.iter().any(|p| p.name == DEMO_PROVIDER) {
        admin
            .providers
            .add_provider(pb::AddProviderRequest {
                tenant: DEMO_TENANT.into(),
                name: DEMO_PROVIDER.into(),
                kind: "mock".into(),
                base_url: String::new(),
                api_key: String::new(),
                ..Default::default()
            })
            .await
            .map_err(status_error)?;
    }
    let models = admin
        .models
        .list_models(pb::ListModelsRequest {
            tenant: DEMO_TENANT.into(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .models;
    for name in DEMO_MODELS {
        if !models.iter().any(|m| m.name == name) {
            admin
                .models
                .add_model(pb::AddModelRequest {
                    tenant: DEMO_TENANT.into(),
                    name: name.into(),
                    provider: DEMO_PROVIDER.into(),
                    upstream_model: name.into(),
                })
                .await
                .map_err(status_error)?;
            // Billing: a new demo model gets a demo price.
            crate::billing::seed_demo_price(admin, DEMO_TENANT, name).await?;
        }
    }
    crate::billing::seed_demo_balance(admin, DEMO_TENANT).await?;
    demo_key(admin, data_dir).await
}

/// Reuses the saved demo key while it is still active, else creates one.
async fn demo_key(admin: &mut Admin, data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(DEMO_KEY_FILE);
    let keys = admin
        .keys
        .list_keys(pb::ListKeysRequest {
            tenant: DEMO_TENANT.into(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .keys;
    if let Ok(saved) = std::fs::read_to_string(&path) {
        let saved = saved.trim().to_string();
        let prefix = tollgate_core::keys::display_prefix(&saved);
        if keys.iter().any(|k| {
            k.revoked_at_ms == 0 && k.prefix == prefix && k.name.starts_with(DEMO_KEY_NAME)
        }) {
            return Ok(saved);
        }
    }
    let name = if keys.iter().any(|k| k.name == DEMO_KEY_NAME) {
        format!("{DEMO_KEY_NAME}-{}", tollgate_core::time::now_ms())
    } else {
        DEMO_KEY_NAME.to_string()
    };
    let created = admin
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: DEMO_TENANT.into(),
            name,
            expires_at_ms: 0,
            providers: Vec::new(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    write_private(&path, &created.secret)?;
    Ok(created.secret)
}

/// Creates the demo tenant's owner user on first start (password generated
/// and saved 0600 in the data dir) and returns the password to print.
async fn demo_owner(admin: &mut Admin, data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(DEMO_PASSWORD_FILE);
    let users = admin
        .auth
        .list_users(pb::ListUsersRequest {
            tenant: DEMO_TENANT.into(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .users;
    if users.iter().any(|u| u.email == DEMO_OWNER_EMAIL) {
        return Ok(std::fs::read_to_string(&path)
            .map(|p| p.trim().to_string())
            .unwrap_or_else(|_| format!("(see {}; missing)", path.display())));
    }
    let created = admin
        .auth
        .create_user(pb::CreateUserRequest {
            tenant: DEMO_TENANT.into(),
            email: DEMO_OWNER_EMAIL.into(),
            password: String::new(),
            role: "owner".into(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    write_private(&path, &created.generated_password)?;
    Ok(created.generated_password)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// Waits until the data plane has its config and accepts the demo key.
async fn wait_until_serving(proxy_url: &str, key: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("{proxy_url}/v1/models");
    loop {
        if let Ok(r) = client.get(&url).bearer_auth(key).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the data plane at {proxy_url} did not accept the demo key within 30 s; run with RUST_LOG=info to see why");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
