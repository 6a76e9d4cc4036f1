"""dino_embedding: a 384-d DINOv2 image embedding (visual similarity) (docs/plugins.md#embeddings).

The vector is written to ``output/dino_embedding.npy`` (float32, shape (384,)).
"""

from __future__ import annotations

from typing import ClassVar

from ._embedding import ImageEmbeddingPlugin

__all__ = ["DinoEmbeddingPlugin"]


class DinoEmbeddingPlugin(ImageEmbeddingPlugin):
    """``client.dino_embedding``: a 384-d DINOv2 image embedding (visual similarity)."""

    task_type: ClassVar[str] = "dino_embedding"
    _output_file: ClassVar[str] = "output/dino_embedding.npy"
    _embedding_dim: ClassVar[int] = 384
