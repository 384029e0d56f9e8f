//! Fairtrail: the end-to-end tests and benchmarks of the workspace live in this package.
