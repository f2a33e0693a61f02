"""Orchestration: plan, submit, status, merge. The only package that imports submitit."""
