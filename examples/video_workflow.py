"""A video workflow: an HLS bundle and a poster thumbnail of one video, submitted at once.

::

    uv run python examples/video_workflow.py                       # no server needed
    uv run python examples/video_workflow.py clip.mp4 --out stream/
    COMPUTE_URL=http://host:8002 MQTT_URL=mqtt://host:1883 \
        uv run python examples/video_workflow.py clip.mp4

With ``COMPUTE_URL`` set it uses that CL Server (``MQTT_URL`` for its broker). Without it, it starts
the local compute service from ``cl_client.testing`` on 127.0.0.1 and, if no video was given,
makes a short one with ffmpeg (the system's, or the one the imageio-ffmpeg package ships). Both
jobs are submitted with ``on_progress``/``on_complete`` callbacks registered, both completions are
awaited, then the whole HLS bundle (master playlist, variant playlists, segments) and the
thumbnail are downloaded and the jobs deleted. The real server cannot thumbnail videos (see
docs/plugins.md#media_thumbnail): that failure is reported, not fatal.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

from cl_client import ClientSettings, ComputeClient, JobUpdate
from cl_client.plugins import HlsVariant, JobCompletions


def make_video(path: Path, seconds: int = 4) -> Path:
    """A small H.264 + AAC test video (HLS maps the audio stream, so the video needs one)."""
    from cl_client.testing import ffmpeg_path

    ffmpeg = ffmpeg_path()
    if ffmpeg is None:
        raise SystemExit("no ffmpeg to make a test video: pass a video file instead")
    picture = ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=320x240:rate=30"]
    tone = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "30"]
    encode += ["-c:a", "aac", "-shortest"]
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-y", *picture, *tone, *encode, str(path)], check=True
    )
    return path


def show_progress(update: JobUpdate) -> None:
    print(f"  job {update.job_id[:8]}: {update.status} ({update.progress}%)")


async def amain(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("video", nargs="?", type=Path, help="a video (default: generated)")
    parser.add_argument("--out", type=Path, default=None, help="where the bundle goes")
    args = parser.parse_args(argv)
    video: Path | None = args.video  # pyright: ignore[reportAny]
    out_arg: Path | None = args.out  # pyright: ignore[reportAny]

    async with AsyncExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cl-video-")))
        if os.environ.get("COMPUTE_URL"):
            settings = ClientSettings.from_env()
            where = f"the CL Server at {settings.compute_url}"
            variants = [HlsVariant(720, 3500), HlsVariant(480, 1500)]  # the server's default
        else:
            from cl_client.testing import LocalComputeService

            service = await stack.enter_async_context(LocalComputeService())
            settings = service.settings()
            where = f"a local compute service at {service.compute_url}"
            variants = [HlsVariant(240, 400), HlsVariant(120, 150)]  # small: quick to encode
        if video is None:
            video = make_video(work_dir / "generated.mp4")
        out_dir = out_arg if out_arg is not None else work_dir / "out"

        client = await stack.enter_async_context(ComputeClient(settings))
        await client.wait_for_workers(["hls_streaming", "media_thumbnail"], timeout=30)
        print(f"Processing {video.name} on {where}")

        done = JobCompletions()
        hls = await client.hls_streaming.generate_manifest(
            video, variants=variants, on_progress=show_progress, on_complete=done.on_complete
        )
        thumb = await client.media_thumbnail.generate(
            video, width=320, height=320, on_progress=show_progress, on_complete=done.on_complete
        )
        print(f"  submitted: hls_streaming {hls.job_id[:8]}, media_thumbnail {thumb.job_id[:8]}")
        done.expect(hls)
        done.expect(thumb)
        try:
            with anyio.fail_after(300):
                finished = await done.wait_all()
            bundle = await client.hls_streaming.result(
                finished[hls.job_id], out_dir / "hls", overwrite=True
            )
            print(
                f"HLS: {bundle.master_playlist.name} with {len(bundle.variant_playlists)} "
                f"variant playlist(s) and {len(bundle.segments)} segment(s) in {bundle.directory}"
            )
            thumb_job = finished[thumb.job_id]
            if thumb_job.is_failed:
                print(f"Thumbnail: the server failed it: {thumb_job.error_message}")
            else:
                poster = await client.media_thumbnail.result(
                    thumb_job, out_dir / "poster.jpg", overwrite=True
                )
                print(f"Thumbnail: {poster.path.name} ({poster.path.stat().st_size} bytes)")
        finally:
            with anyio.CancelScope(shield=True):
                for job in (hls, thumb):
                    await client.delete_job(job.job_id)
        kept = f"files in {out_dir}" if out_arg is not None else "use --out to keep the files"
        print(f"Done ({kept})")
        return 0 if bundle.segments else 1


def main() -> None:
    backend = os.environ.get("CL_CLIENT_BACKEND", "asyncio")
    sys.exit(anyio.run(amain, backend=backend))


if __name__ == "__main__":
    main()
