"""Evidence files: stored once by SHA-256 under STOREOPS_HOME/evidence/, as the CLI stores them.

Edge module, standard library only. The digest is what a completion records in the ledger;
the file sits at `evidence/<first two hex>/<digest>` and a side file `<digest>.json` keeps
the (sanitized) names it was uploaded under and its media type, for people to recognise it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import mimetypes
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from storeops.web.markup import safe_file_name

DIGEST = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20
#: Media types a browser may show inline; anything else (HTML, SVG, scripts) is a download.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"})


class EvidenceError(ValueError):
    """An upload was refused: `reason` is `too_large` or `kind`, for the message catalogue."""

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        self.reason = reason
        self.details = details
        super().__init__(message)


@dataclass(frozen=True)
class StoredFile:
    digest: str
    name: str
    size: int
    media_type: str
    names: list[str] = field(default_factory=list)


#: How the types shown inline begin (their "magic" bytes).
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)
#: Bytes `media_type_of` needs from the start of a file.
SNIFF_BYTES = 16


def sniff(head: bytes) -> str | None:
    """The media type the first bytes of a file show, for the types shown inline."""
    for magic, media_type in _MAGIC:
        if head.startswith(magic):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def media_type_of(name: str, declared: str | None, head: bytes | None = None) -> str:
    """What a file is: what its first bytes show (`head`) for images and PDFs, whatever the
    browser claimed; otherwise the declared type when specific, else one guessed from the
    name. A file claiming an image or PDF type its bytes do not show is octet-stream, so a
    page that asks for image/* cannot be given anything else."""
    declared = (declared or "").split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream":
        claimed = declared
    else:
        claimed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if head is None:
        return claimed
    found = sniff(head)
    if found is not None:
        return found
    if claimed in INLINE_TYPES or claimed.startswith("image/"):
        return "application/octet-stream"
    return claimed


def accepts(kinds: Sequence[str], media_type: str) -> bool:
    """Whether an evidence item's `kinds` (e.g. image/*) admit `media_type` (any when empty)."""
    return not kinds or any(fnmatch.fnmatch(media_type, kind.lower()) for kind in kinds)


class EvidenceStore:
    def __init__(self, home: Path, *, max_bytes: int = 25 * CHUNK) -> None:
        self.root = home / "evidence"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def path(self, digest: str) -> Path:
        if not DIGEST.match(digest):
            raise ValueError(f"{digest!r} is not a SHA-256 digest")
        return self.root / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return bool(DIGEST.match(digest)) and self.path(digest).is_file()

    def save(
        self,
        source: IO[bytes],
        name: str | None,
        media_type: str,
        *,
        by: str = "",
        roles: Sequence[str] = (),
    ) -> StoredFile:
        """Copy `source` into the store (refusing it past `max_bytes`); return its record."""
        self.root.mkdir(parents=True, exist_ok=True)
        hasher = hashlib.sha256()
        size = 0
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as out:
                while chunk := source.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise EvidenceError(
                            "too_large",
                            f"larger than {self.max_bytes // CHUNK} MiB",
                            limit=self.max_bytes // CHUNK,
                        )
                    hasher.update(chunk)
                    out.write(chunk)
            digest = hasher.hexdigest()
            target = self.path(digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                os.unlink(temporary)
            else:
                os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        shown = safe_file_name(name)
        names = self._remember(digest, shown, media_type, size, by, roles)
        return StoredFile(digest, shown, size, media_type, names)

    def _remember(
        self,
        digest: str,
        name: str,
        media_type: str,
        size: int,
        by: str = "",
        roles: Sequence[str] = (),
    ) -> list[str]:
        side = self.path(digest).with_suffix(".json")
        with self._lock:
            info = self.info(digest) or {}
            names = [n for n in info.get("names", []) if isinstance(n, str)]
            if name not in names:
                names.append(name)
            uploaders = [p for p in info.get("by", []) if isinstance(p, str)]
            if by and by not in uploaders:
                uploaders.append(by)
            known_roles = sorted(
                {*(r for r in info.get("roles", []) if isinstance(r, str)), *roles}
            )
            record = {
                "names": names[-20:],
                "media_type": info.get("media_type") or media_type,  # the first one stays
                "size": size,
                "by": uploaders[-50:],  # who uploaded it (they may attach it again)
                "roles": known_roles,  # the roles of the steps it was uploaded for
            }
            temporary = side.with_name(side.name + f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
            os.replace(temporary, side)
        return names

    def info(self, digest: str) -> dict[str, Any] | None:
        """{names, media_type, size} kept for a digest, or None (e.g. stored by the CLI)."""
        if not DIGEST.match(digest):
            return None
        try:
            found = json.loads(self.path(digest).with_suffix(".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def uploaded_by(self, digest: str, person: str) -> bool:
        """Whether `person` uploaded this file (only then may they attach it again)."""
        return person in ((self.info(digest) or {}).get("by") or [])

    def may_see(self, digest: str, person: str, roles: Sequence[str], lead: bool) -> bool:
        """Leads, the uploaders, and holders of the roles of the steps it was uploaded for."""
        if lead:
            return True
        info = self.info(digest) or {}
        return person in (info.get("by") or []) or bool(set(roles) & set(info.get("roles") or []))

    def describe(self, digest: str) -> StoredFile | None:
        """What is known about a stored file, for listing it (None when it is not here)."""
        if not self.exists(digest):
            return None
        info = self.info(digest) or {}
        names = [safe_file_name(str(n)) for n in info.get("names", [])] or [digest[:12]]
        size = self.path(digest).stat().st_size
        media_type = str(info.get("media_type") or "application/octet-stream")
        return StoredFile(digest, names[-1], size, media_type, names)
