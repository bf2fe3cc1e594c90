"""Assessments domain."""
