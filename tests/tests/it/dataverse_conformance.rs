//! The conformance suite of the Dataverse simulator: Microsoft's Python Dataverse client
//! (`powerplatform-dataverse-client`, pinned in `tests/conformance/requirements.txt`) runs
//! `tests/conformance/dataverse_client.py` against a simulator started here. The script puts a
//! TLS front on 127.0.0.1 before it (the client refuses plain http), gets its tokens from the
//! simulator's token endpoint through azure-identity's `ClientSecretCredential`, and checks
//! the operations the connector relies on, each against the Microsoft Learn page it names.
//! A failed check fails this test with the script's output.
//!
//! The Python comes from `DATAVERSE_CONFORMANCE_PYTHON` (set by `make test` and `make
//! conformance` to the venv's), else the workspace's `.venv`. Without the client installed the
//! test skips with a message, unless `REQUIRE_CONFORMANCE=1` (CI), which makes that a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// Test names start with `dataverse::` so that `cargo test -p sandbox dataverse` selects them.
mod dataverse {
    use sandbox::dataverse::{
        ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, DataverseSim, DataverseSimConfig, TENANT_ID,
    };
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// The whole suite runs in a few seconds; this is the limit past which it counts as hung.
    const LIMIT: Duration = Duration::from_secs(120);

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    /// The venv's Python with the client installed, or `None` (skip) when there is none.
    fn python() -> Option<PathBuf> {
        let candidate = std::env::var_os("DATAVERSE_CONFORMANCE_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join(".venv/bin/python"));
        let usable = Command::new(&candidate)
            .args([
                "-c",
                "import PowerPlatform.Dataverse.client, azure.identity",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if usable {
            return Some(candidate);
        }
        assert!(
            std::env::var("REQUIRE_CONFORMANCE").as_deref() != Ok("1"),
            "REQUIRE_CONFORMANCE=1 but {} cannot import Microsoft's Dataverse client (make conformance-tools)",
            candidate.display()
        );
        eprintln!(
            "skipped: {} has no powerplatform-dataverse-client; `make conformance-tools` installs it",
            candidate.display()
        );
        None
    }

    /// Runs the script to its end (or kills it at `LIMIT`); returns success and its output.
    fn run(python: &Path, sim_url: &str) -> (bool, String) {
        let script = workspace().join("tests/conformance/dataverse_client.py");
        let out_path = std::env::temp_dir().join(format!(
            "dataverse-conformance-{}.log",
            uuid::Uuid::new_v4()
        ));
        let out = std::fs::File::create(&out_path).unwrap();
        let mut child = Command::new(python)
            .arg(&script)
            .args([
                "--sim",
                sim_url,
                "--tenant",
                TENANT_ID,
                "--client-id",
                ADMIN_CLIENT_ID,
            ])
            .env("DATAVERSE_CLIENT_SECRET", ADMIN_CLIENT_SECRET)
            .env("PYTHONUNBUFFERED", "1")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut output = std::fs::read_to_string(&out_path).unwrap_or_default();
        let _ = std::fs::remove_file(&out_path);
        if status.is_none() {
            output.push_str(&format!("\n(killed after {} s)", LIMIT.as_secs()));
        }
        (status.is_some_and(|s| s.success()), output)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn microsofts_python_client_passes_every_check_against_the_simulator() {
        let Some(python) = python() else {
            return;
        };
        let sim = DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap();
        let url = sim.base_url();
        let (ok, output) = tokio::task::spawn_blocking(move || run(&python, &url))
            .await
            .unwrap();
        eprintln!("{output}");
        assert!(ok, "the conformance suite failed:\n{output}");
        assert!(
            output.contains(" passed, 0 failed"),
            "the suite ran its checks:\n{output}"
        );
        assert!(
            sim.stats().tokens >= 1,
            "the client's tokens came from the simulator"
        );
    }
}
