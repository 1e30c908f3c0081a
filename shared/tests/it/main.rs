//! The shared crate's integration tests in one binary: the architecture checks, the Dataverse
//! client against a local stand-in, the webhook parser (sample, fuzz, messages) and the intake
//! handler. Run one group with `cargo test -p shared --test it <module>::`.

mod architecture;
mod dataverse_client_api;
mod webhook_fuzz;
mod webhook_intake;
mod webhook_messages;
mod webhook_sample;
