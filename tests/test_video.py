"""``basicsr upscale`` on videos (esc_arch.video): frames streamed through ffmpeg, audio copied, nothing
half-written under the final name. Needs the ``video`` extra (imageio-ffmpeg); the tests skip without it,
except the one that checks the message given when it is missing."""
import subprocess
import sys

import numpy as np
import pytest

from esc_arch.cli import main

FRAMES, HEIGHT, WIDTH = 5, 24, 32


def _ffmpeg():
    imageio_ffmpeg = pytest.importorskip('imageio_ffmpeg', reason='needs the video extra (imageio-ffmpeg)')
    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture
def video(tmp_path):
    """A 5-frame 32x24 H.264 MP4 with an AAC sound track."""
    path = tmp_path / 'in' / 'clip.mp4'
    path.parent.mkdir()
    subprocess.run([_ffmpeg(), '-nostdin', '-loglevel', 'error', '-f', 'lavfi', '-i',
                    f'testsrc=size={WIDTH}x{HEIGHT}:rate=5', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=8000',
                    '-frames:v', str(FRAMES), '-t', '1', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-c:a', 'aac',
                    str(path)], check=True, timeout=60)
    return path


def _streams(path):
    """The frame count, frame size and whether there is an audio stream, as ffmpeg reads the file."""
    import imageio_ffmpeg

    frames = imageio_ffmpeg.read_frames(str(path))
    meta = next(frames)
    count = sum(1 for _ in frames)
    probe = subprocess.run([_ffmpeg(), '-nostdin', '-i', str(path)], capture_output=True, text=True)
    return count, tuple(meta['size']), 'Audio:' in probe.stderr


def test_video_is_upscaled_with_its_audio(tiny_checkpoint, video, tmp_path, capsys):
    checkpoint, _, _ = tiny_checkpoint
    out = tmp_path / 'out'
    assert main(['upscale', '-i', str(video), '-o', str(out), '--weights', str(checkpoint), '--tile', '16']) == 0
    assert [path.name for path in out.iterdir()] == ['clip.mp4']  # no temporary file left
    assert _streams(out / 'clip.mp4') == (FRAMES, (2 * WIDTH, 2 * HEIGHT), True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f'clip.mp4: {FRAMES} frames {WIDTH}x{HEIGHT} -> {2 * WIDTH}x{2 * HEIGHT} -> clip.mp4')
    assert lines[-1].startswith('upscaled 1 of 1 file(s) x2')


def test_video_frames_are_the_networks_output(tiny_checkpoint, video, tmp_path, monkeypatch):
    """Frames go through the same function as images: a frame-marking stand-in shows every frame reaches it."""
    checkpoint, _, _ = tiny_checkpoint
    seen = []

    def white(network, image, scale, tile, tile_pad):
        seen.append(image.shape)
        return np.full((image.shape[0] * scale, image.shape[1] * scale, 3), 255, np.uint8)

    monkeypatch.setattr('esc_arch.inference.upscale_image', white)
    assert main(['upscale', '-i', str(video), '-o', str(tmp_path / 'out'), '--weights', str(checkpoint),
                 '--outscale', '3']) == 0
    assert seen == [(HEIGHT, WIDTH, 3)] * FRAMES
    import imageio_ffmpeg

    frames = imageio_ffmpeg.read_frames(str(tmp_path / 'out' / 'clip.mp4'))
    assert next(frames)['size'] == (3 * WIDTH, 3 * HEIGHT)
    assert all(np.frombuffer(frame, np.uint8).min() > 240 for frame in frames)


def test_interrupted_video_leaves_no_file(tiny_checkpoint, video, tmp_path, monkeypatch):
    checkpoint, _, _ = tiny_checkpoint
    out = tmp_path / 'out'
    out.mkdir()
    calls = []

    def interrupted(network, image, scale, tile, tile_pad):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.zeros((image.shape[0] * scale, image.shape[1] * scale, 3), np.uint8)

    monkeypatch.setattr('esc_arch.inference.upscale_image', interrupted)
    assert main(['upscale', '-i', str(video), '-o', str(out), '--weights', str(checkpoint)]) == 130
    assert list(out.iterdir()) == []  # neither clip.mp4 nor .clip.mp4.PID.part


def test_video_options_that_do_not_apply_are_refused(tiny_checkpoint, video, tmp_path, capsys):
    checkpoint, _, _ = tiny_checkpoint
    for option in ('--compare', '--ext=png'):
        assert main(['upscale', '-i', str(video), '-o', str(tmp_path / 'out'), '--weights', str(checkpoint),
                     option]) == 2
        assert 'applies to images' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_missing_video_extra_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / 'clip.mp4').write_bytes(b'not checked: the extra is missing')
    monkeypatch.setitem(sys.modules, 'imageio_ffmpeg', None)  # import fails as if not installed
    assert main(['upscale', '-i', str(tmp_path / 'clip.mp4'), '-o', str(tmp_path / 'out'),
                 '--weights', str(tmp_path / 'unused.pth')]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("basicsr upscale: error: videos need the video extra: pip install 'esc-arch[video]' "
                   '(imageio-ffmpeg, which ships an ffmpeg binary)')


def test_unreadable_video_is_one_line(tiny_checkpoint, tmp_path, capsys):
    _ffmpeg()
    checkpoint, _, _ = tiny_checkpoint
    (tmp_path / 'broken.mp4').write_bytes(b'\0' * 100)
    assert main(['upscale', '-i', str(tmp_path / 'broken.mp4'), '-o', str(tmp_path / 'out'),
                 '--weights', str(checkpoint)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'cannot read video' in err, err
