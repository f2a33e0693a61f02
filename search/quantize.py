"""int8 and binary codes of unit vectors, and the calibration that defines them.

Rows are L2-normalised first (search scores cosines), then:

- int8: per dimension d, ``[low_d, high_d]`` (the calibration rows' minimum and maximum) is cut
  into 255 steps: ``code = round((x - low) / step) - 128``, clipped to [-128, 127]; a value is
  read back as ``low + (code + 128) * step`` with ``step = (high - low) / 255``.
- binary: bit d is 1 where ``x_d > threshold_d`` (the calibration rows' median of dimension d,
  so each bit splits the rows in half), packed most significant bit first (``np.packbits``), each
  row padded with zero bits to a multiple of 64 so it can be read as uint64 words.

Queries are binarised with the same thresholds; the Hamming distance between two codes is the
number of bits that differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CALIBRATION_ROWS = 100_000  # rows sampled (all where N is smaller) for the ranges and thresholds
WORD_BITS = 64


@dataclass(frozen=True)
class Calibration:
    """Per-dimension int8 ranges and binary thresholds, from a sample of unit rows."""

    low: np.ndarray  # float32 [D]: minimum of each dimension over the calibration rows
    high: np.ndarray  # float32 [D]: maximum
    thresholds: np.ndarray  # float32 [D]: median: bit d is 1 above it
    rows: int  # calibration rows used

    @property
    def step(self) -> np.ndarray:
        """Float32 [D]: one int8 step of each dimension."""
        return int8_step(self.low, self.high)


def int8_step(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Float32 [D]: ``(high - low) / 255``, 1 where a dimension never varies."""
    step = (high - low) / 255
    return np.where(step > 0, step, 1).astype(np.float32)


def unit_rows(block: np.ndarray) -> np.ndarray:
    """Float32 rows of ``block`` scaled to norm 1."""
    block = np.asarray(block, dtype=np.float32)
    return block / np.linalg.norm(block, axis=1, keepdims=True)


def calibrate(sample: np.ndarray) -> Calibration:
    """The calibration of float rows ``sample`` [n, D] (normalised here)."""
    unit = unit_rows(sample)
    return Calibration(
        low=unit.min(axis=0).astype(np.float32),
        high=unit.max(axis=0).astype(np.float32),
        thresholds=np.median(unit, axis=0).astype(np.float32),
        rows=len(unit),
    )


def to_int8(unit: np.ndarray, cal: Calibration) -> np.ndarray:
    """Int8 codes [n, D] of unit rows ``unit`` [n, D]."""
    codes = np.rint((unit - cal.low) / cal.step) - 128
    return np.clip(codes, -128, 127).astype(np.int8)


def from_int8(codes: np.ndarray, low: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Float32 [n, D] values that int8 ``codes`` [n, D] stand for."""
    return low + (codes.astype(np.float32) + 128) * step


def code_bytes(dim: int) -> int:
    """Bytes of one binary code: ``dim`` bits rounded up to whole 64-bit words."""
    return -(-dim // WORD_BITS) * (WORD_BITS // 8)


def to_binary(unit: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Uint8 codes [n, code_bytes(D)] of rows ``unit`` [n, D]: bit d set where ``unit[:, d] > thresholds[d]``."""
    bits = np.packbits(unit > thresholds, axis=1)
    padded = np.zeros((len(unit), code_bytes(unit.shape[1])), dtype=np.uint8)
    padded[:, : bits.shape[1]] = bits
    return padded


def hamming(query_words: np.ndarray, code_words: np.ndarray) -> np.ndarray:
    """Float32 [Q, B]: bits that differ between each query code and each row code (uint64 [Q, W], [B, W]).

    Summed word by word: numpy's sum over a short last axis costs more than the popcounts.
    """
    out = np.empty((len(query_words), len(code_words)), dtype=np.float32)
    for i, word in enumerate(query_words):
        bits = popcount(code_words[:, 0] ^ word[0]).astype(np.uint16)
        for j in range(1, len(word)):
            bits += popcount(code_words[:, j] ^ word[j])
        out[i] = bits
    return out


_BYTE_BITS = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def popcount(words: np.ndarray) -> np.ndarray:
    """Uint8 [n]: set bits of each uint64 in ``words`` (numpy >= 2 counts them in one instruction)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _BYTE_BITS[np.ascontiguousarray(words).view(np.uint8).reshape(-1, 8)].sum(axis=1, dtype=np.uint8)
