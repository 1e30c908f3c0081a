//! Domain: settings (in progress).
