"""A small LRU cache of recent paragraph results, keyed by (paragraph, heading path as read).

Reports repeat formulaic lines (坚持党的领导…, 以习近平新时代中国特色社会主义思想为指导…) and clients
resend paragraphs, so recent results are kept and handed back without running the model again.
The key is what the model reads, so a hit is the result the model would give. Thread-safe.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


def text_key(*parts: str) -> bytes:
    """A 128-bit digest of the parts: an entry costs the same for a 20,000-character paragraph as
    for a short one, so a full cache stays a few megabytes."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass") + b"\x00")
    return digest.digest()


class LRUCache(Generic[V]):
    """At most `size` entries, the least recently used dropped first; size 0 keeps nothing."""

    def __init__(self, size: int):
        if size < 0:
            raise ValueError(f"cache size must be >= 0, not {size}")
        self.size, self.hits, self.misses = size, 0, 0
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: V) -> None:
        if not self.size:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def stats(self) -> dict:
        looked = self.hits + self.misses
        return {"size": self.size, "entries": len(self), "hits": self.hits, "misses": self.misses,
                "hit_rate": round(self.hits / looked, 4) if looked else 0.0}
