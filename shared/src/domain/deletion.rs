//! Domain: deletion (in progress).
