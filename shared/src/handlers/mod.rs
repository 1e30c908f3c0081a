//! Handlers: one module per function. Each turns its trigger's event into domain commands, runs
//! them through the ports, and turns the result into the trigger's answer.

pub mod retroactive;
pub mod sync_worker;
pub mod webhook_intake;
