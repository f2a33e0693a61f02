-- Site GPU policies of the test clusters (job_submit/lua; setup.sh and sid/setup.sh install it):
-- two partitions that each refuse one way of asking for GPUs, so that the kit's
-- `sbatch --test-only` check before queueing meets a real refusal. Partition gpu accepts all.
--   nogres: refuses --gres=gpu:N, a full gres string and --gpus-per-node (the job's per-node TRES)
--   nogpus: refuses --gpus=N (the job's total TRES)
local function asks_for_gpus(tres)
  return tres ~= nil and string.find(tres, "gpu", 1, true) ~= nil
end

function slurm_job_submit(job_desc, part_list, submit_uid)
  local partition = job_desc.partition
  if partition == "nogres" and asks_for_gpus(job_desc.tres_per_node) then
    slurm.log_user("site policy: partition nogres refuses --gres=gpu and --gpus-per-node; ask with --gpus-per-task=N or --gpus=N")
    return slurm.ERROR
  end
  if partition == "nogpus" and asks_for_gpus(job_desc.tres_per_job) then
    slurm.log_user("site policy: partition nogpus refuses --gpus=N; ask with --gres=gpu:N or --gpus-per-task=N")
    return slurm.ERROR
  end
  return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
  return slurm.SUCCESS
end

return slurm.SUCCESS
