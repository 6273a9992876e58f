//! The two tenants of the API scenarios: the scenario's own (`acme`) with an admin, a
//! read-only and an enrollment token, and another one whose admin token is the stranger's.

use chrono::Utc;
use fleet_control::tenant::{self, NewToken};
use fleet_events::event::Role;
use fleet_events::ids::TenantId;
use fleet_events::store::EventStore;

pub struct TwoTenants {
    pub acme: TenantId,
    pub admin: NewToken,
    pub reader: NewToken,
    pub enroll: NewToken,
    pub stranger: NewToken,
}

/// Creates tenants "Acme" (the scenario's tenant) and "Other" and issues their tokens.
pub async fn two_tenants(store: &EventStore) -> TwoTenants {
    let acme = super::tenant();
    let other = TenantId::new("other").expect("slug");
    for (id, name) in [(&acme, "Acme"), (&other, "Other")] {
        tenant::create(store, id, name, Utc::now())
            .await
            .expect("tenant");
    }
    let issue = |tenant: TenantId, role: Role, label: &'static str| async move {
        tenant::issue(store, &tenant, role, label, Utc::now())
            .await
            .expect("token")
    };
    TwoTenants {
        admin: issue(acme.clone(), Role::Admin, "ops").await,
        reader: issue(acme.clone(), Role::ReadOnly, "dash").await,
        enroll: issue(acme.clone(), Role::Enroll, "agents").await,
        stranger: issue(other.clone(), Role::Admin, "ops").await,
        acme,
    }
}
