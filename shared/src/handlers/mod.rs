//! Handlers: one module per function. Each turns its trigger's event into domain commands, runs
//! them through the ports, and turns the result into the trigger's answer.

#[cfg(feature = "aws")]
pub mod connect;
pub mod lead_sync;
pub mod receiver_state_sync;
pub mod resync;
pub mod retroactive;
pub mod sync_worker;
pub mod webhook_intake;
