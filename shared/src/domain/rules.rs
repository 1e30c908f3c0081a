//! Domain: rules (in progress).
