//! Supervisors (in progress).
