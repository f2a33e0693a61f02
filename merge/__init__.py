"""Verify shards against the plan and each other, then stream them into one file."""
