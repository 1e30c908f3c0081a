//! Domain: planner (in progress).
