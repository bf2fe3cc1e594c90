"""Patients domain."""
