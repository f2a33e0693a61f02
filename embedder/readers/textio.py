"""Open a text file that may be gzip- or zstd-compressed, and name the damage when it is."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, cast

from kit.commands import shell_command
from kit.errors import CorpusError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BUFFER_BYTES = 1 << 20


def compression(path: Path) -> str:
    """ "gzip", "zstd" or "" from the name, else from the first bytes."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith(".zst") or name.endswith(".zstd"):
        return "zstd"
    with open(path, "rb") as f:
        head = f.read(4)
    return "gzip" if head.startswith(GZIP_MAGIC) else "zstd" if head == ZSTD_MAGIC else ""


def base_name(path: Path) -> str:
    """The name without a compression suffix: ``a.jsonl.gz`` -> ``a.jsonl``."""
    name = path.name.lower()
    for suffix in (".gz", ".zst", ".zstd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _open_binary(path: Path) -> IO[bytes]:
    kind = compression(path)
    if kind == "gzip":
        return cast(IO[bytes], gzip.open(path, "rb"))  # a binary file; typeshed types GzipFile apart from IO
    if kind == "zstd":
        return io.BufferedReader(_ZstdFrames(open(path, "rb")), BUFFER_BYTES)
    return open(path, "rb", buffering=BUFFER_BYTES)


class _ZstdFrames(io.RawIOBase):
    """zstd frames one after another; a stream cut inside a frame raises EOFError.

    (zstandard's stream_reader returns a short stream without error when the input is cut.)
    """

    def __init__(self, raw: IO[bytes]):
        import zstandard

        self._raw, self._new = raw, zstandard.ZstdDecompressor().decompressobj
        self._frame, self._fed, self._out = self._new(), False, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._out:
            chunk = self._raw.read(BUFFER_BYTES)
            if not chunk:
                if self._fed and not self._frame.eof:
                    raise EOFError("the zstd stream ends inside a frame")
                return 0
            self._out = memoryview(self._decompress(chunk))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _decompress(self, chunk: bytes) -> bytes:
        parts = []
        while chunk:
            if self._frame.eof:
                self._frame, self._fed = self._new(), False
            parts.append(self._frame.decompress(chunk))
            self._fed = True
            chunk = self._frame.unused_data if self._frame.eof else b""
        return b"".join(parts)

    def close(self) -> None:
        self._raw.close()
        super().close()


@contextmanager
def open_text(path: Path, where: list[int], newline: str | None = None) -> Iterator[IO[str]]:
    """Text stream over ``path`` (decompressed); a damaged or cut-short file raises CorpusError.

    ``where`` is a one-item list the caller keeps at the line it has read, named in the error.
    Bytes that are not UTF-8 become lone surrogates, refused row by row later.
    """
    with open_bytes(path, where) as binary:
        yield io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline=newline)


@contextmanager
def open_bytes(path: Path, where: list[int]) -> Iterator[IO[bytes]]:
    """Like ``open_text`` without the decoding: lines as bytes (faster where the parser takes bytes)."""
    binary = _open_binary(path)
    try:
        yield binary
    except (EOFError, OSError, zlib.error) as err:
        raise damaged(path, where[0], err) from err
    except Exception as err:
        if "zstd" in type(err).__name__.lower():  # zstandard.ZstdError: corrupt data
            raise damaged(path, where[0], err) from err
        raise
    finally:
        binary.close()


def damaged(path: Path, line: int, err: BaseException) -> CorpusError:
    """The error for a text file that could not be read past ``line``, with the command that checks it."""
    tool = {"gzip": "gzip", "zstd": "zstd"}.get(compression(path), "")
    check = f" Check it with: {shell_command(tool, '-t', path)}." if tool else ""
    return CorpusError(
        f"{path} is damaged or cut short: reading stopped after line {line} ({err}).{check} "
        "Download or compress it again, then re-run the same make submit command."
    )
