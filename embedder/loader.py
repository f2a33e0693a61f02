"""Load a run's encoder from its identity alone, apart from writing shards.

The embed tasks, the map's questions and any later stage load the same encoder (model, prompt,
normalisation, token limit) on whatever device is at hand; nothing here reads corpus.h5, so a
fetched run folder holding only embeddings.h5 can rebuild its encoder from the file's
``provenance_*`` attributes (``kit.shardfile.ShardIdentity``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from embedder import model as model_lib
from embedder.config import DEFAULT_COMPUTE_DTYPE, DEFAULT_TOKENS_PER_BATCH, ComputeSettings, EmbedIdentity
from embedder.encode import TextEncoder
from embedder.weightcheck import check_weights
from kit.errors import ConfigError
from kit.shardfile import ShardIdentity

log = logging.getLogger(__name__)

BF16_MIN_CAPABILITY = (
    8,
    0,
)  # bfloat16 tensor cores: Ampere and newer; V100 (7.0) and T4 (7.5) have fp16 ones


def compute_dtype_for(device: str, requested: str | None, capability: tuple[int, int] | None = None) -> str:
    """The dtype a device computes in: the one asked for where the device supports it, else its default.

    On CUDA GPUs older than Ampere (``capability`` below 8.0) the default is float16: they have no
    bfloat16 tensor cores (rows that overflow in float16 are redone in float32).
    """
    if requested is None:
        if device == "cuda" and capability is not None and tuple(capability) < BF16_MIN_CAPABILITY:
            return "float16"
        return DEFAULT_COMPUTE_DTYPE.get(device, "float32")
    if device == "cpu" and requested == "float16":
        log.warning("compute dtype float16 is not supported on cpu; using float32")
        return "float32"
    return requested


@dataclass
class LoadedEncoder:
    """A loaded model and its encoder, with what identifies it and how it computes."""

    encoder: TextEncoder
    model: Any  # the SentenceTransformer
    resolved: model_lib.ResolvedModel
    identity: EmbedIdentity  # as loaded: the prompt and token limit the encoder applies
    device: str
    dtype: str
    execution: dict[str, Any]  # device, compute dtype, token budget, attention, GPU: recorded per shard

    def shard_identity(self, fingerprint: str | None, corpus_fingerprint: str | None) -> ShardIdentity:
        """What shards this encoder writes record (the weights' fingerprint comes from submit)."""
        return ShardIdentity(
            model=self.identity.model,
            model_revision=self.resolved.model_revision,
            model_fingerprint=fingerprint,
            dim=self.encoder.dim,
            pooling=model_lib.pooling_description(self.model),
            normalize_embeddings=self.identity.normalize_embeddings,
            prompt=self.encoder.prompt,
            max_seq_length=int(self.model.max_seq_length),
            corpus_fingerprint=corpus_fingerprint,
            passage_window=int(self.model.max_seq_length) if self.identity.passages else None,
            passage_overlap=self.encoder.overlap,
        )


def load_encoder(identity: EmbedIdentity, compute: ComputeSettings) -> LoadedEncoder:
    """The encoder of ``identity`` on ``compute``'s device; checks the weight files' headers first (milliseconds).

    Raises:
        ModelNotFoundError: the model is neither a folder here nor in the offline cache.
        ConfigError: damaged weight files, an unusable GPU, or settings the model cannot take.
    """
    resolved = model_lib.resolve_model(identity, compute.cache_dir)
    check_weights(resolved.path, identity.model)
    device = model_lib.pick_device(compute.device)  # refuses a held GPU it cannot use: before loading
    capability = _capability(device)
    dtype = compute_dtype_for(device, compute.compute_dtype, capability)
    if compute.attention == "flash":
        from embedder.kernels import check_flash_attention

        check_flash_attention(device, dtype, compute.cache_dir, identity.model, capability)
    model = model_lib.load_model(resolved, identity, device, dtype, compute.attention)
    if compute.attention == "flash" and not getattr(model[0], "can_flatten_inputs", False):
        raise ConfigError(
            f"ATTENTION=flash: {identity.model!r} loaded without packed (padding-free) batches, "
            "which would run padded flash attention with a host sync per layer. "
            "Use ATTENTION=sdpa for this model."
        )
    max_tokens = compute.max_tokens_per_batch or DEFAULT_TOKENS_PER_BATCH.get(device, 8192)
    fallback = None
    if dtype != "float32":
        fallback = lambda: model_lib.load_model(resolved, identity, device, "float32")  # noqa: E731
    encoder = TextEncoder(
        model,
        prompt=model_lib.prompt_text(model, identity),
        normalize=identity.normalize_embeddings,
        max_tokens=max_tokens,
        fallback=fallback,
        pin_memory=compute.pin_memory,
        overlap=identity.passage_overlap(int(model.max_seq_length)),
    )
    execution = {
        "device": device,
        "compute_dtype": dtype,
        "max_tokens_per_batch": max_tokens,
        "attention": model_lib.attention_description(model),
        "gpu": model_lib.gpu_name(device),
    }
    log.info(
        "model %s (%s) on %s %s in %s, attention %s, dim %d",
        identity.model,
        resolved.model_revision,
        device,
        execution["gpu"],
        dtype,
        execution["attention"],
        encoder.dim,
    )
    return LoadedEncoder(encoder, model, resolved, identity, device, dtype, execution)


def _capability(device: str) -> tuple[int, int] | None:
    import torch

    if device != "cuda":
        return None
    major, minor = torch.cuda.get_device_capability()
    return major, minor
