"""Orchestration for the people running the kit: the CLI, run state, the stage table, submit, status.

Where stages execute (local processes, Slurm) is in the slurm package; jobs/ decides what to run.
"""
