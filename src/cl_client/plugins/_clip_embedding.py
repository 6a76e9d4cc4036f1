"""clip_embedding: a 512-d MobileCLIP image embedding (semantic similarity).

See docs/plugins.md#embeddings.

The vector is written to ``output/clip_embedding.npy`` (float32, shape (512,)).
"""

from __future__ import annotations

from typing import ClassVar

from ._embedding import ImageEmbeddingPlugin

__all__ = ["ClipEmbeddingPlugin"]


class ClipEmbeddingPlugin(ImageEmbeddingPlugin):
    """``client.clip_embedding``: a 512-d MobileCLIP image embedding (semantic similarity)."""

    task_type: ClassVar[str] = "clip_embedding"
    _output_file: ClassVar[str] = "output/clip_embedding.npy"
    _embedding_dim: ClassVar[int] = 512
