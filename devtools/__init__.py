"""Developer tooling (demo, end-to-end tests, benchmarks); never imported by the connector itself."""
