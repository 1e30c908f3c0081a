//! `crc-install`: registers the connector's webhooks and settings rows in a Dynamics 365 org.
//! Run `crc-install --help`; the work is in the library so that tests drive the same code.

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout();
    match crc_install::run(&args, |name| std::env::var(name).ok(), &mut out).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(crc_install::InstallError::Usage(text)) if text.is_empty() => {
            println!("{}", crc_install::USAGE);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crc-install: {e}");
            if matches!(e, crc_install::InstallError::Usage(_)) {
                eprintln!("\n{}", crc_install::USAGE);
            }
            std::process::ExitCode::FAILURE
        }
    }
}
