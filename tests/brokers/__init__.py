"""Real servers the test suite starts itself, without Docker (Kafka, FerretDB, ...)."""
