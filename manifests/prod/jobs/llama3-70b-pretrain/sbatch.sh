#!/bin/bash
# Slurm batch script of training job 'llama3-70b-pretrain' ('prod'), rendered by aiinfra from stacks/Pulumi.prod.yaml. Do not edit.
# Llama 3 70B, megatron, on 448 node(s) x 8 GPUs = 3584 GPUs of group 'gpu-train'.
# Planner: TP8 PP2 DP224 CP1, micro-batch 1 x 8 micro-batches x DP 224 = global batch 1792 sequences of 8192 tokens;
#   selective recomputation, ZeRO stage 1, bf16; step 5.29 s (estimate); 1021794 steps for 1.5e+13 tokens.
# Checkpoint every 59 steps: the Young/Daly interval 316 s (MTBF 14.1 h on 3584 GPUs, 1.0 s per write) / 5.29 s per step; keep 3.

# Submit: sbatch manifests/prod/jobs/llama3-70b-pretrain/sbatch.sh
#SBATCH --job-name=llama3-70b-pretrain
#SBATCH --partition=train
#SBATCH --nodes=448
#SBATCH --ntasks-per-node=8
#SBATCH --cpus-per-task=28
#SBATCH --gres=gpu:8
#SBATCH --exclusive
#SBATCH --mem=0
#SBATCH --switches=14
#SBATCH --time=14-00:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=llama3-70b-pretrain-%j.out
# --switches: ceil(448 nodes / 32 nodes per SU) leaf switches (topology.conf: one switch per SU).
# --signal: USR1 to this script 300 s before the time limit: the ranks save a checkpoint, the job requeues itself.
# --requeue: a job hit by a node failure goes back to the queue and resumes from the newest checkpoint.

set -euo pipefail

# ---- container and program: switchable, so the Slurm test bed runs this very script without pyxis
#   AIINFRA_NO_CONTAINER=1   run on the host instead of the pinned image
#   AIINFRA_PROGRAM="..."    the program each task starts (default below)
CONTAINER_IMAGE='nvcr.io#nvidia/pytorch:25.04-py3'  # versions.images.megatron: nvcr.io/nvidia/pytorch:25.04-py3
CONTAINER_MOUNTS=/lustre:/lustre
# Megatron-LM core_v0.12.0 (commit d580efc68a9f0dbf1945f834f6f6200cd01d3343): versions.megatron_lm, checked out by the
# megatron_lm role at /lustre/software/megatron-lm/core_v0.12.0 (parallel file system: one checkout for every node).
if [[ "${AIINFRA_NO_CONTAINER:-0}" == 1 ]]; then
  CONTAINER=()
else
  CONTAINER=(--container-image="$CONTAINER_IMAGE" --container-mounts="$CONTAINER_MOUNTS")
fi
read -r -a PROGRAM <<< "${AIINFRA_PROGRAM:-python3 -u /lustre/software/megatron-lm/core_v0.12.0/pretrain_gpt.py}"

# NCCL / UCX for the fabric (aiinfra.render.nccl: the same settings in every launcher)
export NCCL_COLLNET_ENABLE=1
export NCCL_IB_HCA='=mlx5_0:1,mlx5_1:1,mlx5_2:1,mlx5_3:1,mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_7:1'
export NCCL_NET_GDR_LEVEL=PXB
export NCCL_SOCKET_IFNAME='^lo,docker,virbr'
export SHARP_COLL_ENABLE_SAT=1
export UCX_NET_DEVICES=mlx5_0:1,mlx5_1:1,mlx5_2:1,mlx5_3:1,mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_7:1
export OMP_NUM_THREADS=28
export CUDA_DEVICE_MAX_CONNECTIONS=1

mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")  # (no `| head`: SIGPIPE + pipefail)
MASTER_ADDR=${NODES[0]}
MASTER_PORT=$(( 20000 + SLURM_JOB_ID % 20000 ))
export MASTER_ADDR MASTER_PORT

CHECKPOINT_DIR=/lustre/checkpoints/llama3-70b-pretrain
CHECKPOINT_KEEP=3
mkdir -p "$CHECKPOINT_DIR"

# ---- megatron arguments from the plan (resume: --load names the same folder as --save)
ARGS=(
  --tensor-model-parallel-size 8
  --pipeline-model-parallel-size 2
  --context-parallel-size 1
  --sequence-parallel
  --use-distributed-optimizer
  --recompute-activations
  --micro-batch-size 1
  --global-batch-size 1792
  --seq-length 8192
  --max-position-embeddings 8192
  --num-layers 80
  --hidden-size 8192
  --ffn-hidden-size 28672
  --num-attention-heads 64
  --group-query-attention
  --num-query-groups 8
  --swiglu
  --normalization RMSNorm
  --norm-epsilon 1e-05
  --disable-bias-linear
  --position-embedding-type rope
  --rotary-base 500000
  --untie-embeddings-and-output-weights
  --attention-dropout 0.0
  --hidden-dropout 0.0
  --tokenizer-type HuggingFaceTokenizer
  --tokenizer-model /lustre/models/meta-llama-3-70b/tokenizer
  --make-vocab-size-divisible-by 128
  --data-path /lustre/datasets/llama3-pretrain/text_document
  --bf16
  --train-iters 1021794
  --save /lustre/checkpoints/llama3-70b-pretrain
  --load /lustre/checkpoints/llama3-70b-pretrain
  --save-interval 59
  --exit-signal-handler
  --lr 1.5e-4
  --min-lr 1.5e-6
  --lr-decay-style cosine
  --lr-warmup-iters 2000
  --weight-decay 0.1
  --adam-beta1 0.9
  --adam-beta2 0.95
  --clip-grad 1.0
)


# Retention: keep the newest CHECKPOINT_KEEP complete checkpoints. "Complete" = at or below the
# iteration the framework's tracker file names; newer folders are being written and never touched.
prune_checkpoints() {
  local tracker="$CHECKPOINT_DIR/latest_checkpointed_iteration.txt" latest kept=0 step dir
  [[ -r "$tracker" ]] || return 0
  latest=$(tr -dc '0-9' < "$tracker")
  [[ -n "$latest" ]] || return 0
  while read -r step dir; do
    (( step <= 10#$latest )) || continue
    kept=$((kept + 1))
    if (( kept > CHECKPOINT_KEEP )); then
      echo "aiinfra: removing old checkpoint $dir"
      rm -rf -- "$dir"
    fi
  done < <(for dir in "$CHECKPOINT_DIR"/iter_[0-9]*; do
             [[ -d "$dir" ]] && echo "$((10#${dir##*/iter_})) $dir"
           done | sort -rn)
  return 0
}

( trap 'kill $! 2>/dev/null; exit 0' TERM; while true; do sleep 600 & wait $!; prune_checkpoints; done ) &
PRUNER=$!

STOPPING=0
on_usr1() {
  STOPPING=$((STOPPING + 1))
  echo "aiinfra: time limit in 300 s: asking the ranks to checkpoint and exit"
  # SIGTERM to the ranks of the training step (the job's step 0); signalling srun itself would cancel the step
  scancel --signal=TERM "${SLURM_JOB_ID}.0" || true
}
trap on_usr1 USR1

# One task per GPU: Slurm numbers the ranks; every task sees all of its node's GPUs (NVLink peers) and
# picks its own with LOCAL_RANK.
TASK='export RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS LOCAL_WORLD_SIZE=8; exec "$@"'
# --mpi=none: torch.distributed rendezvous through MASTER_ADDR (env://), no PMIx wire-up of 3584 tasks.
srun --kill-on-bad-exit=1 --mpi=none --nodes=448 --ntasks=3584 --ntasks-per-node=8 \
  "${CONTAINER[@]}" \
  bash -c "$TASK" task "${PROGRAM[@]}" "${ARGS[@]}" &
STEP=$!
status=0
while true; do
  seen=$STOPPING
  wait "$STEP" && status=0 || status=$?
  (( STOPPING == seen )) && break  # else USR1 interrupted wait: wait again for the step's own status
done

kill "$PRUNER" 2>/dev/null || true
prune_checkpoints
if (( STOPPING )); then
  echo "aiinfra: requeueing job $SLURM_JOB_ID; it resumes from the newest checkpoint"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
