//! HTTP model source (work in progress).
