//! The sandbox crate's integration tests in one binary (one link instead of one per file): the
//! simulators on their own, the connector's clients against them, the AWS adapters against an
//! emulator, the installer, and the end-to-end tests through the Dataverse simulator's Web API.
//! Run one group with `cargo test -p sandbox --test it <module>::`, e.g. `e2e_campaigns::`.
//! `log_capture` (it owns the process's log subscriber), `lambda_invoke` (real binaries under
//! cargo-lambda) and `e2e_convergence` (long random runs) are binaries of their own.

mod admin_dlq;
mod admin_preview;
mod aws_secrets;
mod aws_sqs;
mod aws_token_race;
mod checklist_browser;
mod checklist_e2e;
mod checklist_installer;
mod checklist_sim;
mod cleverreach_client_batches;
mod cleverreach_client_faults;
mod cleverreach_client_ops;
mod cleverreach_client_tokens;
mod cleverreach_conformance;
mod cleverreach_connect;
mod cleverreach_sim_api;
mod cleverreach_sim_hooks;
mod cleverreach_sim_oauth;
mod cleverreach_sim_pessimistic;
mod cleverreach_sim_sdk_gaps;
mod dataverse_client_sandbox;
mod dataverse_client_sandbox_faults;
mod dataverse_conformance;
mod dataverse_sim_api;
mod dataverse_sim_batch;
mod dataverse_sim_client_gaps;
mod dataverse_sim_faults;
mod dataverse_sim_fetchxml;
mod dataverse_sim_metadata;
mod dataverse_sim_webhooks;
mod e2e_brake;
mod e2e_campaigns;
mod e2e_continued_reconcile;
mod e2e_deletion;
mod e2e_hooks;
mod e2e_lead_sync;
mod e2e_lean_reads;
mod e2e_marketing_list;
mod e2e_metrics;
mod e2e_opt_outs;
mod e2e_receiver_state;
mod e2e_recipients;
mod e2e_reconnect;
mod e2e_resync;
mod e2e_retroactive;
mod e2e_sqs;
mod e2e_sweep;
mod e2e_thousand_members;
mod e2e_worker_batch;
mod infra_concurrency;
mod installer;
