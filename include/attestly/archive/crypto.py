"""The encrypted archive object format (``attestly.archive/v1``): AES-256-GCM in authenticated chunks.

Layout::

    magic    8 bytes   b"ATTARC01"
    hlen     4 bytes   big-endian length of the header
    header   hlen bytes of canonical JSON: {"batch_id", "chunk_size", "cipher": "AES-256-GCM",
             "format": "parquet", "kdf": "HKDF-SHA256", "key_id", "salt" (hex, 32 bytes), "version": 1}
    chunks   AES-GCM ciphertext + 16-byte tag, one after the other

Every chunk but the last holds exactly ``chunk_size`` plaintext bytes; the last holds 0..chunk_size
bytes (an empty object still has one, empty, final chunk). Chunk ``i`` is sealed with

- key: ``HKDF-SHA256(data key, salt, info = b"attestly.archive/v1 " + batch_id)`` — a fresh key per
  object (random salt), so nonces never repeat under one key even though a data key serves many objects
  and a re-upload after a crash encrypts again;
- nonce: ``i`` as a 12-byte big-endian counter;
- associated data: ``sha256(magic || hlen || header) || i (8 bytes, big-endian) || final (1 byte: 1 for
  the last chunk, else 0)``.

So a reordered chunk fails (index), a truncated object fails (the chunk that becomes last was sealed as
not final), an extended one fails (the old last chunk was sealed final), a swapped header fails (every
chunk's AAD carries its hash), and nothing decrypts without the data key. Memory is bounded by the
chunk size whatever the object size: :class:`EncryptingWriter` streams out, :func:`decrypt_stream` streams
in, and :class:`RandomAccessDecryptor` serves random reads (Parquet footers) chunk by chunk.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"ATTARC01"
VERSION = 1
TAG_BYTES = 16
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
_PREFIX = len(MAGIC) + 4


class ArchiveFormatError(ValueError):
    """Bytes that are not a valid archive object (bad magic, header, or a chunk that does not
    authenticate); the message says which chunk or field."""


@dataclass(frozen=True)
class Header:
    batch_id: str
    key_id: str
    salt: bytes
    chunk_size: int

    def to_bytes(self) -> bytes:
        body = json.dumps(
            {
                "batch_id": self.batch_id,
                "chunk_size": self.chunk_size,
                "cipher": "AES-256-GCM",
                "format": "parquet",
                "kdf": "HKDF-SHA256",
                "key_id": self.key_id,
                "salt": self.salt.hex(),
                "version": VERSION,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        return MAGIC + struct.pack(">I", len(body)) + body


def parse_header(prefix: bytes) -> tuple[Header, int]:
    """Parse the header at the start of ``prefix``; returns it and the offset of the first chunk."""
    if len(prefix) < _PREFIX or prefix[: len(MAGIC)] != MAGIC:
        raise ArchiveFormatError("not an Attestly archive object (bad magic)")
    (hlen,) = struct.unpack(">I", prefix[len(MAGIC) : _PREFIX])
    if hlen > MAX_HEADER_BYTES:
        raise ArchiveFormatError(f"archive header length {hlen} is implausible")
    if len(prefix) < _PREFIX + hlen:
        raise ArchiveFormatError("archive object is truncated inside its header")
    try:
        body = json.loads(prefix[_PREFIX : _PREFIX + hlen])
        header = Header(
            batch_id=str(body["batch_id"]),
            key_id=str(body["key_id"]),
            salt=bytes.fromhex(body["salt"]),
            chunk_size=int(body["chunk_size"]),
        )
        ok = body["version"] == VERSION and body["cipher"] == "AES-256-GCM" and body["kdf"] == "HKDF-SHA256"
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveFormatError(f"archive header is not valid ({exc})") from exc
    if not ok or len(header.salt) != 32 or header.chunk_size <= 0:
        raise ArchiveFormatError(f"archive header describes an unsupported format: {body}")
    if header.to_bytes() != prefix[: _PREFIX + hlen]:
        raise ArchiveFormatError("archive header is not in canonical form")
    return header, _PREFIX + hlen


def _subkey(data_key: bytes, header: Header) -> AESGCM:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=header.salt,
        info=b"attestly.archive/v1 " + header.batch_id.encode(),
    )
    return AESGCM(hkdf.derive(data_key))


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def _aad(header_hash: bytes, index: int, final: bool) -> bytes:
    return header_hash + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


# -------------------------------------------------------------------------------------------- writing


class EncryptingWriter(io.RawIOBase):
    """A write-only file: plaintext in, archive object bytes out to ``sink`` (called with each piece).

    ``close()`` seals the final chunk; until then the object is incomplete (and would not decrypt).
    ``plaintext_bytes``, ``object_bytes`` and ``sha256`` describe what was produced.
    """

    def __init__(
        self,
        *,
        data_key: bytes,
        batch_id: str,
        key_id: str,
        sink: Callable[[bytes], None],
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__()
        self._header = Header(batch_id=batch_id, key_id=key_id, salt=os.urandom(32), chunk_size=chunk_size)
        header_bytes = self._header.to_bytes()
        self._aead = _subkey(data_key, self._header)
        self._header_hash = hashlib.sha256(header_bytes).digest()
        self._sink = sink
        self._chunk_size = chunk_size
        self._buf = bytearray()
        self._index = 0
        self._hash = hashlib.sha256()
        self.plaintext_bytes = 0
        self.object_bytes = 0
        self._emit(header_bytes)

    def _emit(self, data: bytes) -> None:
        self._hash.update(data)
        self.object_bytes += len(data)
        self._sink(data)

    def _seal(self, plaintext: bytes | bytearray | memoryview, *, final: bool) -> None:
        sealed = self._aead.encrypt(
            _nonce(self._index), plaintext, _aad(self._header_hash, self._index, final)
        )
        self._index += 1
        self._emit(sealed)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        """Seal every full chunk that is known not to be the last; keep the rest (at most one chunk) back.
        Full chunks are sealed straight from ``data`` (no copy of large writes)."""
        if self.closed:
            raise ValueError("write to a closed archive writer")
        view = memoryview(data).cast("B")
        n = len(view)
        self.plaintext_bytes += n
        cs = self._chunk_size
        pos = 0
        if self._buf:
            need = cs - len(self._buf)
            if n <= need:  # the pending chunk is not full yet (or exactly full: it may be the last)
                self._buf += view
                return n
            self._buf += view[:need]
            self._seal(self._buf, final=False)
            self._buf = bytearray()
            pos = need
        while n - pos > cs:  # strictly more than a chunk left: this one is not the last
            self._seal(view[pos : pos + cs], final=False)
            pos += cs
        self._buf += view[pos:]
        return n

    def tell(self) -> int:
        return self.plaintext_bytes

    def close(self) -> None:
        if not self.closed:
            self._seal(self._buf, final=True)
            self._buf = bytearray()
        super().close()

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of every object byte emitted so far (the whole object once closed)."""
        return self._hash.hexdigest()

    @property
    def chunks(self) -> int:
        return self._index


# -------------------------------------------------------------------------------------------- reading


def decrypt_stream(
    pieces: Iterable[bytes], *, data_key: bytes, on_object_bytes: Callable[[bytes], None] | None = None
) -> Iterator[bytes]:
    """Decrypt a whole archive object read front to back; yields plaintext chunk by chunk.

    ``pieces`` is the object's bytes in any split (e.g. an S3 streaming body). Every chunk is
    authenticated; a missing, reordered, altered or extra chunk raises :class:`ArchiveFormatError`.
    ``on_object_bytes`` sees every object byte (to hash the object in the same pass).
    """
    it = iter(pieces)
    buf = bytearray()
    ended = False

    def fill(n: int) -> None:
        nonlocal ended
        while len(buf) < n and not ended:
            try:
                piece = next(it)
            except StopIteration:
                ended = True
                return
            if on_object_bytes is not None:
                on_object_bytes(piece)
            buf.extend(piece)

    fill(_PREFIX)
    if len(buf) >= _PREFIX:
        fill(_PREFIX + struct.unpack(">I", bytes(buf[len(MAGIC) : _PREFIX]))[0])
    header, offset = parse_header(bytes(buf))
    header_hash = hashlib.sha256(bytes(buf[:offset])).digest()
    del buf[:offset]
    aead = _subkey(data_key, header)
    sealed_size = header.chunk_size + TAG_BYTES
    index = 0
    while True:
        fill(sealed_size + 1)  # one byte more tells whether this chunk is the last
        final = len(buf) <= sealed_size
        take = min(len(buf), sealed_size)
        if take < TAG_BYTES:
            raise ArchiveFormatError(f"archive object truncated: chunk {index} is {take} bytes")
        try:
            with memoryview(buf) as mv:
                plain = aead.decrypt(_nonce(index), mv[:take], _aad(header_hash, index, final))
        except InvalidTag:
            raise ArchiveFormatError(
                f"archive chunk {index} does not authenticate (altered, reordered or truncated object)"
            ) from None
        del buf[:take]
        yield plain
        index += 1
        if final:
            return


class RandomAccessDecryptor(io.RawIOBase):
    """A seekable, read-only plaintext view of an archive object fetched by byte ranges.

    ``fetch(start, end)`` returns object bytes ``[start, end)`` (an S3 ranged GET); ``size`` is the object
    size. Chunks are decrypted on demand, authenticated one by one, and a few are cached — so Parquet can
    read its footer and selected column chunks without the whole object in memory.
    """

    def __init__(
        self,
        *,
        fetch: Callable[[int, int], bytes],
        size: int,
        data_key: bytes,
        expect_batch_id: str | None = None,
        expect_key_id: str | None = None,
        cache_chunks: int = 4,
    ) -> None:
        super().__init__()
        self._fetch = fetch
        prefix = fetch(0, min(size, _PREFIX + MAX_HEADER_BYTES))
        header, offset = parse_header(prefix)
        if expect_batch_id is not None and header.batch_id != expect_batch_id:
            raise ArchiveFormatError(
                f"archive object belongs to batch {header.batch_id!r}, not {expect_batch_id!r}"
            )
        if expect_key_id is not None and header.key_id != expect_key_id:
            raise ArchiveFormatError(
                f"archive object is sealed under key {header.key_id!r}, not {expect_key_id!r}"
            )
        self.header = header
        self._header_hash = hashlib.sha256(prefix[:offset]).digest()
        self._offset = offset
        self._aead = _subkey(data_key, header)
        sealed = header.chunk_size + TAG_BYTES
        body = size - offset
        full, rem = divmod(body, sealed)
        if body < TAG_BYTES or (rem and rem < TAG_BYTES):
            raise ArchiveFormatError(f"archive object of {size} bytes cannot hold whole chunks (truncated?)")
        self._chunks = full + (1 if rem else 0)
        last_plain = (rem or sealed) - TAG_BYTES
        self._size = (self._chunks - 1) * header.chunk_size + last_plain
        self._sealed = sealed
        self._pos = 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_chunks = max(1, cache_chunks)
        self._object_size = size

    @property
    def size(self) -> int:
        """Plaintext size in bytes."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def _load(self, first: int, last: int) -> None:
        """Fetch and decrypt chunks ``first..last`` (inclusive) that are not cached, in one range read."""
        for i in range(first, last + 1):
            if i in self._cache:
                self._cache.move_to_end(i)
        wanted = [i for i in range(first, last + 1) if i not in self._cache]
        if not wanted:
            return
        lo, hi = wanted[0], wanted[-1]
        start = self._offset + lo * self._sealed
        end = min(self._object_size, self._offset + (hi + 1) * self._sealed)
        data = self._fetch(start, end)
        if len(data) != end - start:
            raise ArchiveFormatError(
                f"short read of archive chunks {lo}..{hi}: {len(data)} of {end - start} bytes"
            )
        for i in range(lo, hi + 1):
            piece = data[(i - lo) * self._sealed : (i - lo + 1) * self._sealed]
            final = i == self._chunks - 1
            try:
                plain = self._aead.decrypt(_nonce(i), piece, _aad(self._header_hash, i, final))
            except InvalidTag:
                raise ArchiveFormatError(
                    f"archive chunk {i} does not authenticate (altered, reordered or truncated object)"
                ) from None
            self._cache[i] = plain
            self._cache.move_to_end(i)
            while len(self._cache) > max(self._cache_chunks, last - first + 1):
                self._cache.popitem(last=False)

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self._size:
            return b""
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        cs = self.header.chunk_size
        first, last = self._pos // cs, (end - 1) // cs
        self._load(first, last)
        parts = []
        for i in range(first, last + 1):
            chunk = memoryview(self._cache[i])
            lo = max(self._pos, i * cs) - i * cs
            hi = min(end, (i + 1) * cs) - i * cs
            parts.append(chunk[lo:hi])
        self._pos = end
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        n = len(data)
        memoryview(buffer).cast("B")[:n] = data
        return n

    def readall(self) -> bytes:
        return self.read(-1)
