//! What the control plane says to operators, shared by the servers that say it and the
//! clients that read it: the read models' query protocol ([`query`]) and answers
//! ([`dto`]), the JSON of what
//! events carry ([`event_shapes`]) and of notification events ([`notify_json`]), which
//! agents a name names ([`names`]), and sizes in words ([`words`]).

pub mod dto;
pub mod event_shapes;
pub mod names;
pub mod notify_json;
pub mod query;
pub mod words;
