"""Lazily created plugin clients on ComputeClient (``client.hash``, ``client.exif``, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast

if TYPE_CHECKING:
    from .._client import ComputeClient
    from ._base import PluginClient
    from ._clip_embedding import ClipEmbeddingPlugin
    from ._dino_embedding import DinoEmbeddingPlugin
    from ._exif import ExifPlugin
    from ._face_detection import FaceDetectionPlugin
    from ._face_embedding import FaceEmbeddingPlugin
    from ._hash import HashPlugin
    from ._hls_streaming import HlsStreamingPlugin
    from ._image_conversion import ImageConversionPlugin
    from ._media_thumbnail import MediaThumbnailPlugin

__all__ = ["PluginAccess"]

P = TypeVar("P", bound="PluginClient")


class PluginAccess:
    """Mixin of ComputeClient: one lazily created typed client per plugin."""

    _plugin_clients: dict[type[PluginClient], PluginClient]

    def _plugin(self, cls: type[P]) -> P:
        try:
            cache = self._plugin_clients
        except AttributeError:
            cache = self._plugin_clients = {}
        plugin = cache.get(cls)
        if not isinstance(plugin, cls):
            plugin = cache[cls] = cls(cast("ComputeClient", self))
        return plugin

    @property
    def clip_embedding(self) -> ClipEmbeddingPlugin:
        """512-d MobileCLIP image embeddings: ``embed_image``, ``result``, ``run``."""
        from ._clip_embedding import ClipEmbeddingPlugin

        return self._plugin(ClipEmbeddingPlugin)

    @property
    def dino_embedding(self) -> DinoEmbeddingPlugin:
        """384-d DINOv2 image embeddings: ``embed_image``, ``result``, ``run``."""
        from ._dino_embedding import DinoEmbeddingPlugin

        return self._plugin(DinoEmbeddingPlugin)

    @property
    def exif(self) -> ExifPlugin:
        """EXIF metadata: ``extract``, ``result``, ``run``."""
        from ._exif import ExifPlugin

        return self._plugin(ExifPlugin)

    @property
    def face_detection(self) -> FaceDetectionPlugin:
        """Faces with boxes, landmarks and crops: ``detect``, ``result``, ``download_crops``."""
        from ._face_detection import FaceDetectionPlugin

        return self._plugin(FaceDetectionPlugin)

    @property
    def face_embedding(self) -> FaceEmbeddingPlugin:
        """512-d ArcFace embeddings of face crops: ``embed_faces``, ``result``, ``run``."""
        from ._face_embedding import FaceEmbeddingPlugin

        return self._plugin(FaceEmbeddingPlugin)

    @property
    def hash(self) -> HashPlugin:
        """md5 / sha512 digests: ``compute``, ``result``, ``run``."""
        from ._hash import HashPlugin

        return self._plugin(HashPlugin)

    @property
    def hls_streaming(self) -> HlsStreamingPlugin:
        """Adaptive HLS bundles: ``generate_manifest``, ``result`` (download), ``run``."""
        from ._hls_streaming import HlsStreamingPlugin

        return self._plugin(HlsStreamingPlugin)

    @property
    def image_conversion(self) -> ImageConversionPlugin:
        """Image format conversion: ``convert``, ``result`` (download), ``run``."""
        from ._image_conversion import ImageConversionPlugin

        return self._plugin(ImageConversionPlugin)

    @property
    def media_thumbnail(self) -> MediaThumbnailPlugin:
        """JPEG thumbnails of images and videos: ``generate``, ``result`` (download), ``run``."""
        from ._media_thumbnail import MediaThumbnailPlugin

        return self._plugin(MediaThumbnailPlugin)
