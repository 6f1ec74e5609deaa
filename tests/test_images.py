"""Reading and writing images (esc_arch.images): EXIF orientation, the pixel limit, write errors."""
import errno
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import exif_image, image_folder, one_line_error, smooth_image

from esc_arch.cli import main
from esc_arch.errors import ImageError, OutputError
from esc_arch.images import read_image, write_image


@pytest.mark.parametrize('orientation', range(1, 9))
def test_images_are_turned_by_their_exif_orientation_as_training_reads_them(tmp_path, orientation):
    """``read_image`` as stored (upscale, make-lr, ...) and BasicSR's reader (OpenCV IMREAD_COLOR) agree."""
    exif_image(tmp_path / 'photo.png', orientation)
    expected = cv2.imread(str(tmp_path / 'photo.png'), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(read_image(tmp_path / 'photo.png'), expected)
    np.testing.assert_array_equal(read_image(tmp_path / 'photo.png', color=True), expected)


def test_max_pixels_is_configurable(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / 'img.png'), smooth_image(30, 40))
    with pytest.raises(ImageError, match='is 40x30 pixels, more than the limit of 1,000'):
        read_image(tmp_path / 'img.png', max_pixels=1000)
    assert read_image(tmp_path / 'img.png', max_pixels=1200).shape == (30, 40, 3)
    folder = image_folder(tmp_path / 'in', [(30, 40)] * 2)
    one_line_error(capsys, ['make-lr', '-i', str(folder), '-o', str(tmp_path / 'lr'), '--max-pixels', '1000',
                            '--workers', '1'], '2 images could not be used (listed above); nothing was written')
    assert main(['make-lr', '-i', str(folder), '-o', str(tmp_path / 'lr'), '--max-pixels', '1200',
                 '--workers', '1']) == 0


def test_write_errors_are_output_errors_and_leave_no_temporary_file(tmp_path, monkeypatch):
    def disk_full(self, data):
        Path.open(self, 'wb').write(data[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, 'write_bytes', disk_full)
    with pytest.raises(OutputError, match=f'cannot write {tmp_path / "x.png"}: No space left on device'):
        write_image(np.zeros((4, 4, 3), np.uint8), tmp_path / 'x.png')
    assert os.listdir(tmp_path) == []
