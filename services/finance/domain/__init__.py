"""The finance service's pure domain: rules, commands, events, aggregates."""
