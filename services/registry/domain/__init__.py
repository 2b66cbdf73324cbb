"""The register of off-campus training institutions: pure domain code, no I/O."""
