//! Unit tests of the use cases against the in-memory fakes of every port: the main paths and a
//! failure in every port, in milliseconds and without a simulator.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

pub(crate) mod fixtures;

mod backflow;
mod brake;
mod deadline;
mod hooks;
mod lean_reads;
mod people_change;
mod port_failures;
mod source_change;
mod sweep;
