//! `fleet tenant create|token|revoke|tokens`: tenants and tokens, written as events
//! straight to the event log (the operator bootstrap; the HTTP API comes on top).

use chrono::Utc;
use fleet_control::tenant;
use fleet_events::event::Role;
use fleet_events::ids::{TenantId, TokenId};
use fleet_events::store::EventStore;

use crate::cli::{NatsArgs, RoleArg, TenantCommand};

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::ReadOnly => Role::ReadOnly,
            RoleArg::Enroll => Role::Enroll,
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::ReadOnly => "read-only",
        Role::Enroll => "enroll",
    }
}

async fn connect(nats: &NatsArgs) -> anyhow::Result<EventStore> {
    nats.store().await
}

fn tenant_id(text: &str) -> anyhow::Result<TenantId> {
    TenantId::new(text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs one `fleet tenant` command.
pub async fn run(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create(args) => {
            let id = tenant_id(&args.tenant)?;
            let store = connect(&args.nats).await?;
            let name = args.name.unwrap_or_else(|| id.to_string());
            tenant::create(&store, &id, &name, Utc::now()).await?;
            let admin = tenant::issue(
                &store,
                &id,
                Role::Admin,
                "created with the tenant",
                Utc::now(),
            )
            .await?;
            let enroll = tenant::issue(
                &store,
                &id,
                Role::Enroll,
                "created with the tenant",
                Utc::now(),
            )
            .await?;
            println!("tenant {id} created");
            println!(
                "admin token {} (shown once, keep it safe):\n  {}",
                admin.id,
                admin.text.expose()
            );
            println!(
                "enrollment token {} for agents (shown once):\n  {}",
                enroll.id,
                enroll.text.expose()
            );
            Ok(())
        }
        TenantCommand::Token(args) => {
            let id = tenant_id(&args.tenant)?;
            let store = connect(&args.nats).await?;
            let role = Role::from(args.role);
            let token = tenant::issue(&store, &id, role, &args.label, Utc::now()).await?;
            println!(
                "{} token {} of tenant {id} (shown once):\n  {}",
                role_name(role),
                token.id,
                token.text.expose()
            );
            Ok(())
        }
        TenantCommand::Revoke(args) => {
            let id = tenant_id(&args.tenant)?;
            let token: TokenId = args.token_id.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = connect(&args.nats).await?;
            tenant::revoke(&store, &id, token, Utc::now()).await?;
            println!("token {token} of tenant {id} revoked");
            Ok(())
        }
        TenantCommand::Tokens(args) => {
            let id = tenant_id(&args.tenant)?;
            let store = connect(&args.nats).await?;
            let (book, _) = tenant::book(&store, &id).await?;
            if !book.exists {
                anyhow::bail!("no tenant {id}");
            }
            println!("{:<36}  {:<9}  {:<7}  LABEL", "TOKEN", "ROLE", "STATE");
            for (token, role, label, revoked) in book.tokens() {
                let state = if *revoked { "revoked" } else { "live" };
                println!("{token:<36}  {:<9}  {state:<7}  {label}", role_name(*role));
            }
            Ok(())
        }
    }
}
