//! HTTP NLU connector (work in progress).
