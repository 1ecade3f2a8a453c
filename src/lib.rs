//! sse-edge: an edge reverse proxy on pingora that turns upstreams — SSE streams, polled
//! JSON endpoints, WebSocket feeds — into Server-Sent Events for browsers.
//!
//! Where an event comes from: [`sources`]. Where it waits: [`stream`] (the shared ring).
//! Who writes it: [`stream::writer`], called from the pingora boundary in [`proxy`]. Which
//! backend of a route an upstream request goes to: [`pool`].

pub mod app;
pub mod auth;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod healthcheck;
pub mod keepalive;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod sources;
pub mod sse;
pub mod stream;
