//! The `fleet` command: thin glue over `fleet-control` (the control host's verbs) and
//! `fleet-cli` (the operators' verbs).

mod cli;
mod projections_cmd;
mod tenant_cmd;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use fleet_control::access::{self, AccessConfig, Reload};
use fleet_control::serve;
use fleet_control::{shutdown, up};

use crate::cli::{Cli, Command, StreamsCommand};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(fleet_cli::exit::USAGE);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fleet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // API errors carry their own exit code (and a 400's field problems).
            let (code, text) = fleet_cli::report(&e);
            if let Some(text) = text {
                eprintln!("{text}");
            }
            ExitCode::from(code)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => {
            let demo = match args.demo {
                false => None,
                true => Some(fleet_control::demo::DemoConfig {
                    dir: std::path::absolute(args.data_dir.join("demo"))
                        .context("resolving the data directory")?,
                    agent_binary: args
                        .agent_binary
                        .clone()
                        .or_else(fleet_control::demo::find_agent_binary)
                        .context(
                            "--demo needs the fleet-agent program: build it (cargo build \
                             -p fleet-agent) or name it with --agent-binary",
                        )?,
                    every_secs: args.demo_every_secs,
                    nats_ca_file: args.nats_ca_file.clone(),
                }),
            };
            let mut services = args.services.config()?;
            if services.projections_dir.is_none() {
                services.projections_dir = Some(args.data_dir.join("projections"));
            }
            if services.snapshots.dir.is_none() {
                services.snapshots.dir = Some(args.data_dir.join("snapshots"));
            }
            let api_addr = *services
                .api_addr
                .get_or_insert(std::net::SocketAddr::from(([127, 0, 0, 1], 8080)));
            if args.api_tls_self_signed {
                let names = up::self_signed_names(api_addr, &args.api_tls_names);
                let dir = args.data_dir.join(up::API_TLS_DIR);
                let made =
                    fleet_control::api::self_signed::ensure(&dir, &names, chrono::Utc::now())?;
                tracing::info!(names = %made.names.join(","), expires = %made.expires.to_rfc3339(),
                    made = made.made, ca = %made.ca.display(),
                    "the API serves HTTPS with a self-signed certificate; clients trust its CA: \
                     fleet --api https://{api_addr} --api-ca-file {}", made.ca.display());
                if made.replaced {
                    tracing::warn!(ca = %made.ca.display(),
                        "a new CA was made: clients that trusted an earlier one must be given this one");
                }
                services.api_tls = Some(made.files);
            }
            let config = up::UpConfig {
                demo,
                nats_url: args
                    .nats_url
                    .as_deref()
                    .map(cli::nats_servers)
                    .transpose()?,
                data_dir: args.data_dir,
                nats_port: args.nats_port,
                nats_key_file: args.nats_key_file,
                nats_ca_file: args.nats_ca_file,
                nats_tls: args.nats_tls_cert.zip(args.nats_tls_key),
                streams: args.streams.options(),
                services,
            };
            up::run(config, shutdown::on_signals()).await
        }
        Command::Serve(args) => {
            let mut config = args.services.config()?;
            if let Some(out) = &args.access.nats_auth_file {
                config.access = Some(AccessConfig {
                    out: Some(out.clone()),
                    render: args.access.render_config(&args.nats)?,
                    reload: match &args.access.nats_pid_file {
                        Some(file) => Reload::PidFile(file.clone()),
                        None => Reload::Never,
                    },
                });
            }
            let store = args.nats.store().await?;
            serve::run(args.service.into(), store, config, shutdown::on_signals()).await
        }
        Command::Streams(StreamsCommand::Ensure(args)) => {
            args.nats
                .store()
                .await?
                .ensure_streams(&args.streams.options())
                .await
                .context("ensuring the streams")?;
            println!("streams ready on {}", args.nats.servers()?);
            Ok(())
        }
        Command::NatsConfig(args) => {
            if args.create_key
                && let Some(file) = &args.nats.nats_key_file
            {
                fleet_events::store::connect::load_or_create_key(file)
                    .with_context(|| format!("the control-plane key {}", file.display()))?;
            }
            let render = args.access.render_config(&args.nats)?;
            if args.bootstrap {
                if args.out.exists() {
                    println!(
                        "kept {} (it exists; the access service keeps it current)",
                        args.out.display()
                    );
                } else {
                    access::render_bootstrap(&render, &args.out)?;
                    println!(
                        "wrote {} (the control plane{}; no agents yet)",
                        args.out.display(),
                        if render.anonymous_enroll {
                            " and anonymous registration"
                        } else {
                            ""
                        }
                    );
                }
                return Ok(());
            }
            let store = args.nats.store().await?;
            let agents = access::render_once(&store, &render, &args.out).await?;
            println!(
                "wrote {} ({agents} agents, {} control-plane keys{}).\n\
                 Include it in every nats-server's configuration (`include \"{}\"`), then \
                 reload each server: `nats-server --signal reload=<pid>` or `kill -HUP <pid>`.\n\
                 Run it again, or run `fleet serve access --nats-auth-file FILE \
                 --nats-pid-file PIDFILE` on each server's machine, whenever agents register \
                 or are decommissioned.",
                args.out.display(),
                render.control_keys.len(),
                if render.anonymous_enroll {
                    ", anonymous connections may register"
                } else {
                    ""
                },
                args.out.display()
            );
            Ok(())
        }
        Command::TlsCert(args) => {
            let made = fleet_control::api::self_signed::ensure(
                &args.dir,
                &args.names,
                chrono::Utc::now(),
            )?;
            println!(
                "{} {} for {} until {}; clients trust {}",
                if made.made { "made" } else { "kept" },
                made.files.cert.display(),
                made.names.join(", "),
                made.expires.to_rfc3339(),
                made.ca.display()
            );
            Ok(())
        }
        Command::Tenant(command) => tenant_cmd::run(command).await,
        Command::Projections(command) => projections_cmd::run(command).await,
        Command::Operator(command) => fleet_cli::run(command).await,
    }
}
