"""Videos in and out, frame by frame, through the ffmpeg binary of the optional ``video`` extra.

``pip install 'esc-arch[video]'`` installs imageio-ffmpeg, whose wheel ships an ffmpeg executable:
no system ffmpeg is needed. Frames are streamed through pipes (one ffmpeg process decodes to raw
8-bit BGR frames, another encodes), so a video of any length needs the memory of a few frames only.
The audio streams are copied unchanged, the container is the source's (so that the copied audio
fits it), and the video stream is encoded as H.264 (VP9 for ``.webm``) in 4:2:0 at a quality setting
that is visually lossless for most content (CRF 18; VP9: CRF 30). 4:2:0 needs even sizes: an odd
output width or height loses its last column or row.

The encoder writes a hidden ``.NAME.PID.part`` file beside the target that is renamed only once it
is complete (:func:`esc_arch.files.atomic_output`): an error, Ctrl-C or a kill leaves no
half-written file under the final name (and a previous file of that name as it was).
"""
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from esc_arch.errors import ESCError, ImageError, OutputError
from esc_arch.files import atomic_output

__all__ = ['VIDEO_EXTENSIONS', 'VideoInfo', 'ffmpeg_executable', 'upscale_video']

_CONTAINERS = {'.mp4': 'mp4', '.m4v': 'mp4', '.mov': 'mov', '.mkv': 'matroska', '.webm': 'webm', '.avi': 'avi'}
VIDEO_EXTENSIONS = tuple(_CONTAINERS)
"""Video files ``basicsr upscale`` accepts (the output keeps the container)."""
_H264 = ['-c:v', 'libx264', '-preset', 'medium', '-crf', '18']
_ENCODERS = {'webm': ['-c:v', 'libvpx-vp9', '-crf', '30', '-b:v', '0']}
_EVEN_SIZE = 'crop=trunc(iw/2)*2:trunc(ih/2)*2'


@dataclass(frozen=True)
class VideoInfo:
    """What ffmpeg reports about a video before decoding its frames.

    Attributes:
        width (int): Frame width (after the rotation ffmpeg applies).
        height (int): Frame height.
        fps (float): Frames per second (0 when unknown).
        frames (int | None): Estimated number of frames (duration x fps), None when unknown.
    """
    width: int
    height: int
    fps: float
    frames: int | None


def ffmpeg_executable() -> str:
    """The ffmpeg binary of imageio-ffmpeg.

    Raises:
        ESCError: The ``video`` extra is not installed.
    """
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ESCError("videos need the video extra: pip install 'esc-arch[video]' (imageio-ffmpeg, which ships "
                       'an ffmpeg binary)') from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def upscale_video(source: str | Path, target: str | Path, upscale_frame: Callable[[np.ndarray], np.ndarray],
                  output_size: Callable[[int, int], tuple[int, int]], max_pixels: int) -> tuple[VideoInfo, int]:
    """Upscale every frame of ``source`` with ``upscale_frame`` and write the video ``target``, audio copied.

    Args:
        source (str | Path): The input video.
        target (str | Path): The output video, same container as ``source``.
        upscale_frame (Callable): Maps an ``(H, W, 3)`` uint8 BGR frame to its upscaled frame.
        output_size (Callable): Maps ``(height, width)`` of a frame to the ``(height, width)`` of its output.
        max_pixels (int): The largest input and output frame, in pixels, checked before any frame is decoded.

    Returns:
        tuple[VideoInfo, int]: The source's description and the number of frames written.

    Raises:
        ESCError: The ``video`` extra is missing.
        ImageError: ``source`` cannot be read as a video, or its frames (or theirs upscaled) are too large.
        OutputError: ``target`` cannot be written.
    """
    source, target = Path(source), Path(target)
    ffmpeg = ffmpeg_executable()
    frames, info = _read_frames(source)
    try:
        height, width = output_size(info.height, info.width)
        for label, (w, h) in (('its frames', (info.width, info.height)), ('its upscaled frames', (width, height))):
            if w * h > max_pixels:
                raise ImageError(f'{source}: {label} are {w}x{h} pixels, more than the limit of {max_pixels:,} '
                                 '(raise it with --max-pixels if the video is genuine)')
        with atomic_output(target) as temporary:
            written = _encode(ffmpeg, source, temporary, info, (width, height),
                              tqdm(map(upscale_frame, frames), total=info.frames, unit='frame', leave=False,
                                   disable=None))
        return info, written
    finally:
        frames.close()


def _read_frames(source: Path) -> tuple[Iterator[np.ndarray], VideoInfo]:
    """A generator of the BGR frames of ``source`` (close it to stop ffmpeg), and the video's description."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(source), pix_fmt='bgr24')
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration, ValueError) as err:
        reader.close()
        details = str(err).strip().splitlines()
        raise ImageError(f'cannot read video {source}: {details[-1] if details else type(err).__name__}') from None
    width, height = meta['size']
    fps, duration = float(meta.get('fps') or 0), float(meta.get('duration') or 0)
    info = VideoInfo(width, height, fps, round(fps * duration) if fps and duration else None)

    def frames():
        try:
            for data in reader:
                yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
        except RuntimeError as err:
            raise ImageError(f'cannot decode video {source}: {str(err).splitlines()[0]}') from None
        finally:
            reader.close()

    return frames(), info


def _encode(ffmpeg: str, source: Path, temporary: Path, info: VideoInfo, size: tuple[int, int],
            frames: Iterator[np.ndarray]) -> int:
    """Write ``frames`` (uint8 BGR of ``size``) to ``temporary``, with the audio of ``source``; the frame count."""
    container = _CONTAINERS[source.suffix.lower()]
    rate = str(Fraction(info.fps).limit_denominator(1001)) if info.fps else '25'
    command = [ffmpeg, '-nostdin', '-y', '-loglevel', 'error',
               '-f', 'rawvideo', '-pix_fmt', 'bgr24', '-s', f'{size[0]}x{size[1]}', '-r', rate, '-i', '-',
               '-i', str(source), '-map', '0:v:0', '-map', '1:a?', '-c:a', 'copy',
               *_ENCODERS.get(container, _H264), '-pix_fmt', 'yuv420p', '-vf', _EVEN_SIZE, '-f', container,
               str(temporary)]
    written = 0
    with tempfile.TemporaryFile() as log:
        encoder = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        try:
            for frame in frames:
                if frame.shape[:2] != (size[1], size[0]) or frame.dtype != np.uint8:
                    raise ImageError(f'{source}: frame {written + 1} upscaled to {frame.shape}, {frame.dtype}; '
                                     f'expected {size[1]}x{size[0]} uint8')
                encoder.stdin.write(np.ascontiguousarray(frame).tobytes())
                written += 1
            encoder.stdin.close()
            code = encoder.wait()
        except BrokenPipeError:
            code = encoder.wait()
        except BaseException:
            encoder.kill()
            encoder.wait()
            raise
        if code != 0:
            log.seek(0)
            lines = log.read().decode(errors='replace').strip().splitlines()
            raise OutputError(f'ffmpeg could not write {source.name} upscaled (exit code {code}): '
                              f'{lines[-1] if lines else "no message"}')
    return written

