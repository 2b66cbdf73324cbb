"""Inspections domain: pure rules, no I/O."""
