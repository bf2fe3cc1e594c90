"""Recalls domain."""
