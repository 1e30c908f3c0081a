//! CleverReach simulator (in progress).
