"""Inspections: batches and their visits, findings and rectification orders, complaints,
law talks and penalties, and the training-schedule checker."""
