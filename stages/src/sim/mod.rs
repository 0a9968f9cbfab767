//! The embedded simulated exchange.
