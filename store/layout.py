"""Where rows live: videos in shards, shards in chunks. Pure arithmetic, no I/O.

A row is one clip variant of one video; the ``rows_per_video`` rows of a video are
contiguous. A shard holds ``shard_videos`` whole videos, so a shard never splits a video
and the rows of every array in one shard form one file (one object) per array. A writer
(a rank) owns whole shards: it writes each array's shard in one piece, then the shard's
done marker. Chunks (the unit of compression and of reading) divide shards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ShardLayout:
    rows_per_video: int
    shard_videos: int
    n_videos: int

    def __post_init__(self) -> None:
        if self.rows_per_video < 1 or self.shard_videos < 1 or self.n_videos < 0:
            raise ValueError(f"bad layout {self}")

    @property
    def rows_per_shard(self) -> int:
        return self.rows_per_video * self.shard_videos

    @property
    def n_rows(self) -> int:
        return self.n_videos * self.rows_per_video

    @property
    def n_shards(self) -> int:
        return math.ceil(self.n_videos / self.shard_videos)

    def shard_of_row(self, row: int) -> int:
        return row // self.rows_per_shard

    def shard_rows(self, shard: int) -> tuple[int, int]:
        """Rows [start, stop) of ``shard`` (the last shard may be short)."""
        start = shard * self.rows_per_shard
        return start, min(start + self.rows_per_shard, self.n_rows)

    def shard_video_range(self, shard: int) -> tuple[int, int]:
        """Videos [first, stop) of ``shard``, as positions in the store's video order."""
        first = shard * self.shard_videos
        return first, min(first + self.shard_videos, self.n_videos)

    def chunk_rows(self, row_nbytes: int, chunk_mb: float) -> int:
        """Rows per chunk: whole videos, dividing the shard, about ``chunk_mb`` MiB or more.

        The number of videos per chunk is the largest divisor of ``shard_videos`` whose
        chunk stays within the target, or one video when even one is larger.
        """
        target_videos = chunk_mb * 2**20 / max(row_nbytes * self.rows_per_video, 1)
        best = 1
        for videos in range(1, self.shard_videos + 1):
            if self.shard_videos % videos == 0 and videos <= max(target_videos, 1):
                best = videos
        return best * self.rows_per_video


def owned_shards(n_shards: int, rank: int, world: int) -> list[int]:
    """The shards a rank writes: every ``world``-th shard from ``rank`` (balanced when video
    lengths drift along the table), disjoint across ranks, covering all shards together."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    return list(range(rank, n_shards, world))
