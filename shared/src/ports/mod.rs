//! Ports: the small traits through which the use cases and handlers reach the outside world,
//! each taking and returning domain types. Adapters implement them (Dataverse, CleverReach, SQS,
//! Secrets Manager); `adapters::memory` has in-memory versions for unit tests and the local run.
//! See `docs/architecture.md` ("Ports and adapters").

pub mod crm;
pub mod failures;
pub mod newsletter;
pub mod queue;
pub mod secrets;

pub use crm::*;
pub use failures::*;
pub use newsletter::*;
pub use queue::*;
pub use secrets::*;

/// Every CRM port; the Dataverse adapter and the in-memory fake implement all of them.
pub trait Crm:
    SettingsSource
    + SourceStore
    + MemberReader
    + PeopleDirectory
    + PersonStore
    + ReceiverStateLog
    + SignupStore
    + CursorStore
    + RetroactiveStore
{
}

impl<T> Crm for T where
    T: SettingsSource
        + SourceStore
        + MemberReader
        + PeopleDirectory
        + PersonStore
        + ReceiverStateLog
        + SignupStore
        + CursorStore
        + RetroactiveStore
{
}

/// Every newsletter port; the CleverReach adapter and the in-memory fake implement all of them.
pub trait Newsletter: GroupStore + ReceiverStore + BlockList + NewsletterEndpoint {}

impl<T> Newsletter for T where T: GroupStore + ReceiverStore + BlockList + NewsletterEndpoint {}
