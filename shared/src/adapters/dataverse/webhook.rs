//! Adapter: Dataverse webhook bodies (RemoteExecutionContext) into ChangeEvent (in progress).
