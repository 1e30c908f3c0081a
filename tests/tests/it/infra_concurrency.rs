//! The template's concurrency settings against what the code does (docs/architecture.md §4
//! "Concurrency"): the source workers may have as many Dataverse requests under way as the
//! member reader reads segments side by side, and the deployment stays within Dataverse's 52.

use shared::adapters::dataverse::crm::SEGMENTS_IN_FLIGHT;

const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

/// The `Default:` of a template parameter.
fn default_of(parameter: &str) -> Option<usize> {
    let start = TEMPLATE.find(&format!("\n  {parameter}:\n"))?;
    let block = &TEMPLATE[start..];
    let line = block
        .lines()
        .find(|l| l.trim_start().starts_with("Default:"))?;
    line.trim_start()
        .trim_start_matches("Default:")
        .trim()
        .parse()
        .ok()
}

/// `DATAVERSE_CONCURRENT_REQUESTS` of the function whose log group is `log_group`, if set.
fn requests_of(log_group: &str) -> Option<usize> {
    let start = TEMPLATE.find(&format!("LogGroup: !Ref {log_group}"))?;
    let block = &TEMPLATE[start..];
    let end = block.find("\n  Sync").unwrap_or(block.len());
    let line = block[..end]
        .lines()
        .find(|l| l.trim_start().starts_with("DATAVERSE_CONCURRENT_REQUESTS:"))?;
    line.split(':')
        .nth(1)?
        .trim()
        .trim_matches('"')
        .parse()
        .ok()
}

#[test]
fn source_workers_may_read_their_member_segments_side_by_side_within_dataverse_limit() {
    let source_logs = [
        "SyncMarketingListLogGroup",
        "SyncCampaignLogGroup",
        "SyncCampaignActivityLogGroup",
    ];
    for log in source_logs {
        assert_eq!(
            requests_of(log),
            Some(SEGMENTS_IN_FLIGHT),
            "{log}: DATAVERSE_CONCURRENT_REQUESTS must let the segments be read side by side"
        );
    }
    let workers = default_of("WorkerMaximumConcurrency").expect("WorkerMaximumConcurrency");
    let events =
        default_of("EventsWorkerMaximumConcurrency").expect("EventsWorkerMaximumConcurrency");
    // docs/architecture.md §4: source queues, people queues, events worker (4 requests each),
    // the two back-flow jobs, the retroactive pair, resync.
    let retroactive =
        default_of("RetroactiveMaximumConcurrency").expect("RetroactiveMaximumConcurrency");
    let total =
        3 * workers * SEGMENTS_IN_FLIGHT + 3 * workers + events * 4 + 2 + 2 * retroactive + 1;
    assert!(
        total <= 52,
        "{total} Dataverse requests may be under way at once"
    );
}
