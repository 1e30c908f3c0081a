//! `crc-admin`: previews, drift report and dead-letter tools for a running connector. Run
//! `crc-admin --help`; the work is in the library so that tests drive the same code.

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout();
    match crc_admin::main_with(&args, &mut out).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crc-admin: {e}");
            if matches!(e, crc_admin::AdminError::Usage(_)) {
                eprintln!("\n{}", crc_admin::USAGE);
            }
            std::process::ExitCode::FAILURE
        }
    }
}
