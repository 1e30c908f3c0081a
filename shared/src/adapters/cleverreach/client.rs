//! Adapter: CleverReach REST v3 client (in progress).
