"""kopf's last-handled configuration, kept as a digest instead of a copy of the object.

kopf's default stores the whole spec (JSON, non-ASCII escaped to up to 12 bytes a character) in an annotation.
Annotations share one 256 KiB budget per object (with kubectl's last-applied copy), so a large spec made every
patch of every handler fail: no status, no Invalid condition, no way to tell the user. Modelship's handlers
read no diff (they reconcile from the whole body), so kopf only needs to know whether the essence changed,
and a digest says that in 71 bytes for a spec of any size.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

import kopf

DIGEST_PREFIX = "sha256:"


def digest(essence: Any) -> str:
    """Digest of an essence, independent of key order."""
    canonical = json.dumps(essence, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return DIGEST_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """Stores the digest of the last handled essence; reports the current essence back while it matches."""

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        for key in self.make_keys(self.key, body=body):
            patch.metadata.annotations[key] = digest(essence)
        self._store_marker(prefix=self.prefix, patch=patch, body=body)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        """The essence last handled: the current one when the digest matches, else a stand-in that differs.

        A full copy left by an earlier operator version is still read as such.
        """
        for key in self.make_keys(self.key, body=body):
            stored = body.metadata.annotations.get(key)
            if stored is None:
                continue
            if not stored.startswith(DIGEST_PREFIX):
                return cast(kopf.BodyEssence, json.loads(stored))
            current = self.build(body=body)
            if digest(current) == stored:
                return current
            return cast(kopf.BodyEssence, {"last-handled": stored})
        return None
