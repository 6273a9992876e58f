//! Who may speak to the fleet: tenants and their tokens ([`tenant`]), the registrar that
//! registers agents presenting an enrollment token ([`enroll`]), and the access service
//! that renders every agent's NATS permissions from the log ([`access`]).

pub mod access;
pub mod enroll;
pub mod tenant;
