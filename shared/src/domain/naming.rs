//! Domain: naming (in progress).
