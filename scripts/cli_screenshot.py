"""Make docs/cli.svg, the picture of cl-client's live display in the README.

::

    uv run python scripts/cli_screenshot.py            # writes docs/cli.svg

It runs the real command (``python -m cl_client media_thumbnail generate``) under a
pseudo-terminal against a local compute service started here (jobs slowed down so the display
has something to show, one made to fail), records what the terminal received, and renders, with
rich's SVG export, one frame from the middle of the run followed by the end of the run: the
final bar and the summary table. Nothing is drawn by hand.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import sys
import tempfile
import termios
from pathlib import Path

import anyio
from PIL import Image, ImageDraw
from rich.console import Console
from rich.text import Text

from cl_client.testing import LocalComputeService

ROOT = Path(__file__).resolve().parent.parent
COLUMNS, ROWS = 104, 32
_FRAME_START = re.compile(r"\r(?:\x1b\[2K\x1b\[1A)*\x1b\[2K")
_NOT_SGR = re.compile(r"\x1b\[[0-9;?]*[A-Za-ln-z]")  # every CSI sequence but colours ("m")
_DONE = re.compile(r"(\d+)/(\d+)")


def make_photos(directory: Path, count: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = Image.new("RGB", (640, 427), (20 + 9 * i, 90, 150))
        ImageDraw.Draw(img).ellipse((120, 60, 420 + 4 * i, 360), fill=(240, 200, 40))
        img.save(directory / f"IMG_{4021 + i:04d}.jpg", quality=85)


async def record(photos: Path, thumbs: Path) -> str:
    """Run the command under a pseudo-terminal; everything the terminal received."""
    async with LocalComputeService(workers=3) as svc:
        svc.faults.delay_jobs(0.6)
        svc.faults.fail_jobs(
            "cannot identify image file",
            where=lambda job: str(job.params.get("input_path", "")).endswith("IMG_4029.jpg"),
        )
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        command = [
            sys.executable,
            "-m",
            "cl_client",
            "--compute-url",
            svc.compute_url,
            "--mqtt-url",
            svc.mqtt_url,
            "media_thumbnail",
            "generate",
            "photos/",
            "-o",
            "thumbs/",
            "--width",
            "256",
            "-j",
            "6",
        ]
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS)}
        env.pop("NO_COLOR", None)
        process = await anyio.open_process(
            command, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=photos.parent
        )
        os.close(slave)
        chunks: list[bytes] = []

        def read() -> None:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                chunks.append(data)

        try:
            await anyio.to_thread.run_sync(read)
            await process.wait()
        finally:
            os.close(master)
            await process.aclose()
    del thumbs
    return b"".join(chunks).decode(errors="replace")


def frames(raw: str) -> tuple[str, str]:
    """A frame from the middle of the run (most jobs in flight) and the end of the run."""
    parts = _FRAME_START.split(raw.replace("\r\n", "\n"))
    live = parts[1:-1]
    end = parts[-1]

    def score(frame: str) -> tuple[int, int]:
        plain = _NOT_SGR.sub("", frame)
        match = _DONE.search(plain)
        done, total = (int(match.group(1)), int(match.group(2))) if match else (0, 1)
        in_flight = plain.count("\n")
        return in_flight, -abs(done * 2 - total)

    middle = max(live, key=score) if live else ""
    return middle, end


def render(middle: str, end: str, out: Path) -> None:
    console = Console(
        record=True,
        width=COLUMNS,
        force_terminal=True,
        color_system="truecolor",
        file=io.StringIO(),  # recorded only
    )
    prompt = "$ cl-client media_thumbnail generate photos/ -o thumbs/ --width 256 -j 6"
    console.print(Text(prompt, style="bold"))
    console.print(Text.from_ansi(_NOT_SGR.sub("", middle).rstrip("\n")))
    console.print(Text("\n⋮  (when the last job ends)\n", style="dim italic"))
    console.print(Text.from_ansi(_NOT_SGR.sub("", end).strip("\n")))
    out.parent.mkdir(parents=True, exist_ok=True)
    console.save_svg(str(out), title="cl-client")


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cl-screenshot-") as tmp:
        photos = Path(tmp) / "photos"
        make_photos(photos, 24)
        raw = await record(photos, Path(tmp) / "thumbs")
    middle, end = frames(raw)
    target = ROOT / "docs" / "cli.svg"
    render(middle, end, target)
    print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    anyio.run(main)
