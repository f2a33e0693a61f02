"""Where a run's stages execute, for every scheduler: the backends and what runs inside a job.

backend (the Watcher and Backend protocols, StageRequest, JobRecord, JobState, Snapshot),
local (LocalBackend: submitit's local executor), cluster (SlurmBackend: sbatch arrays and
afterok through submitit), slurmcli (every Slurm command and its parsing), tasks (requeue policy,
late-signal immunity, local afterok), observe (one view across backends), profiles (the sites'
slurm/profiles/*.toml); and the three-node test clusters (slurm/testcluster/). Nothing here imports
jobs/: the stage table there says what to run, these modules how.
"""
