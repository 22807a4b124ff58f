//! hearth's supervisor: power metering, health, accounting and the status page of a family's
//! Matrix server. See ARCHITECTURE.md for the map.

pub mod account;
pub mod accountant;
pub mod accounting;
pub mod app;
pub mod audit;
pub mod backup;
pub mod backup_usb;
pub mod backup_watch;
pub mod budget;
pub mod cli;
pub mod clock;
pub mod config;
pub mod device;
pub mod health;
pub mod http;
pub mod http_client;
pub mod invite;
pub mod led;
pub mod logging;
pub mod maintenance;
pub mod meter;
pub mod name;
pub mod owner;
pub mod power;
pub mod replay;
pub mod report;
pub mod seal_notice;
pub mod setup_expiry;
pub mod storage;
pub mod synapse_api;
pub mod transparency;
pub mod tunnel;
pub mod units;
pub mod update;
