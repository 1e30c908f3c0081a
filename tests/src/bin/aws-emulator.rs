//! `aws-emulator`: starts LocalStack in Docker through testcontainers, prints
//! `AWS_ENDPOINT_URL=<url>` on one line, and keeps it running until stdin closes or the process
//! is told to stop; the container goes with it. Built only with the `localstack` feature;
//! `tests/with-aws-emulator.sh` runs it when a Docker engine answers. Current LocalStack images
//! want `LOCALSTACK_AUTH_TOKEN`, which is passed through when set.

use std::io::Read;
use std::process::ExitCode;
use testcontainers_modules::localstack::LocalStack;
use testcontainers_modules::testcontainers::ImageExt;
use testcontainers_modules::testcontainers::runners::AsyncRunner;

#[tokio::main]
async fn main() -> ExitCode {
    let mut image = LocalStack::default().with_env_var("SERVICES", "sqs,secretsmanager");
    if let Ok(token) = std::env::var("LOCALSTACK_AUTH_TOKEN") {
        image = image.with_env_var("LOCALSTACK_AUTH_TOKEN", token);
    }
    let container = match image.start().await {
        Ok(container) => container,
        Err(e) => {
            eprintln!("aws-emulator: LocalStack did not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let port = match container.get_host_port_ipv4(4566).await {
        Ok(port) => port,
        Err(e) => {
            eprintln!("aws-emulator: LocalStack's port is unknown: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("AWS_ENDPOINT_URL=http://127.0.0.1:{port}");
    // Runs until stdin closes (the script that started it ends) or a signal arrives.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
    });
    tokio::select! {
        _ = stdin_closed => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(container);
    ExitCode::SUCCESS
}
