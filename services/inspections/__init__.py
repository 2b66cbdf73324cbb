"""Inspections, findings, rectifications, complaints and law talks.

Not built yet: this service comes on the same kernel (services/common) in its own issue.
"""
