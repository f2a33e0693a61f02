#!/bin/sh
# TaskProlog of the test clusters: each task's TMPDIR is its node's own scratch folder (a real
# cluster's node-local disk). slurmstepd reads "export NAME=value" lines from this script's output.
dir="@STATE@/nodes/${SLURMD_NODENAME:-unknown}/tmp"
mkdir -p "$dir"
echo "export TMPDIR=$dir"
