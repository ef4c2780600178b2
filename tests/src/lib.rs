//! Harness for integration tests: starts real `redis-server` processes.
