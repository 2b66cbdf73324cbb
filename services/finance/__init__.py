"""Supervision accounts and prepaid orders held in escrow, released lesson by lesson.

Not built yet: this service comes on the same kernel (services/common) in its own issue.
"""
