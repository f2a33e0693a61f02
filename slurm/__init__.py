"""Cluster profiles (slurm/profiles/*.toml) and the one-node test cluster (slurm/testcluster/)."""
