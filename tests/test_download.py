"""``basicsr download`` against a local HTTP server on 127.0.0.1 (no test touches the internet)."""
import hashlib
import http.server
import os
import re
import socket
import threading
from pathlib import Path

import pytest

from esc_arch.cli import main
from esc_arch.download import BASE_URL_VARIABLE, CHECKSUMS_FILE, download_release
from esc_arch.errors import DownloadError, OptionsError
from esc_arch.zoo import RELEASES, find_release

NAME = 'ESC_light_X4.pth'
CONTENT = os.urandom(300_000)
SERVER_LIFETIME_SECONDS = 60  # the server stops itself after this, should a test leave it running


class ReleaseHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (name -> bytes) with single ``bytes=N-`` ranges; records the Range headers."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        server = self.server
        server.ranges.append(self.headers.get('Range'))
        content = server.files.get(self.path.lstrip('/'))
        if content is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range') or '')
        if match and server.honour_ranges:
            start = int(match.group(1))
            if start >= len(content):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(content) - 1}/{len(content)}')
        else:
            self.send_response(200)
        body = content[start:]
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        # A broken connection: announce the whole body, send part of it and close.
        self.wfile.write(body[:server.cut_after] if server.cut_after is not None else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), ReleaseHandler)
    httpd.files, httpd.ranges, httpd.honour_ranges, httpd.cut_after = {NAME: CONTENT}, [], True, None
    httpd.url = f'http://127.0.0.1:{httpd.server_address[1]}/'
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(SERVER_LIFETIME_SECONDS, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    yield httpd
    watchdog.cancel()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _checksums(folder):
    return (folder / CHECKSUMS_FILE).read_text()


def test_download_writes_file_and_records_sha256(server, tmp_path):
    path, downloaded = download_release('esc_light_x4', tmp_path, server.url)
    assert downloaded and path == tmp_path / NAME
    assert path.read_bytes() == CONTENT
    assert _checksums(tmp_path) == f'{hashlib.sha256(CONTENT).hexdigest()}  {NAME}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME, CHECKSUMS_FILE]  # no .part left
    # Again: the file is there and matches, nothing is fetched.
    requests = len(server.ranges)
    assert download_release(NAME, tmp_path, server.url) == (path, False)
    assert len(server.ranges) == requests


def test_interrupted_download_is_kept_and_resumed_with_a_range(server, tmp_path):
    server.cut_after = 100_000
    with pytest.raises(DownloadError, match='resume'):
        download_release(NAME, tmp_path, server.url)
    partial = tmp_path / f'{NAME}.part'
    assert not (tmp_path / NAME).exists()  # nothing under the final name until complete
    assert partial.read_bytes() == CONTENT[:100_000]
    server.cut_after = None
    path, downloaded = download_release(NAME, tmp_path, server.url)
    assert server.ranges[-1] == 'bytes=100000-'
    assert downloaded and path.read_bytes() == CONTENT and not partial.exists()


def test_server_ignoring_the_range_restarts_from_zero(server, tmp_path):
    server.honour_ranges = False
    (tmp_path / f'{NAME}.part').write_bytes(b'stale bytes')
    path, _ = download_release(NAME, tmp_path, server.url)
    assert path.read_bytes() == CONTENT


def test_complete_partial_file_is_finished_without_data(server, tmp_path):
    (tmp_path / f'{NAME}.part').write_bytes(CONTENT)
    path, downloaded = download_release(NAME, tmp_path, server.url)
    assert downloaded and path.read_bytes() == CONTENT and server.ranges == [f'bytes={len(CONTENT)}-']


def test_download_differing_from_recorded_sha256_is_refused(server, tmp_path):
    download_release(NAME, tmp_path, server.url)
    (tmp_path / NAME).unlink()
    server.files[NAME] = CONTENT[::-1]  # replaced upstream
    with pytest.raises(DownloadError, match='SHA-256'):
        download_release(NAME, tmp_path, server.url)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKSUMS_FILE]


def test_corrupted_local_file_is_detected(server, tmp_path):
    path, _ = download_release(NAME, tmp_path, server.url)
    path.write_bytes(CONTENT[:-1] + bytes([CONTENT[-1] ^ 1]))
    with pytest.raises(DownloadError, match=f'{NAME} has SHA-256 .*delete it'):
        download_release(NAME, tmp_path, server.url)


def test_environment_variable_sets_the_base_url(server, tmp_path, monkeypatch):
    monkeypatch.setenv(BASE_URL_VARIABLE, server.url)
    assert download_release(NAME, tmp_path)[0].read_bytes() == CONTENT


def test_http_error_and_unknown_name(server, tmp_path):
    server.files.clear()
    with pytest.raises(DownloadError, match='HTTP 404'):
        download_release(NAME, tmp_path, server.url)
    with pytest.raises(DownloadError, match='did you mean ESC_light_X4.pth'):
        download_release('ESC_lite_X4', tmp_path, server.url)


def _closed_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_cli_without_connection_is_one_line(tmp_path, capsys):
    code = main(['download', NAME, '--dir', str(tmp_path), '--base-url', f'http://127.0.0.1:{_closed_port()}'])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith('basicsr download: error: cannot download') and 'no internet connection' in err
    assert '\n' not in err and 'Traceback' not in err


def test_cli_downloads_and_lists(server, tmp_path, capsys):
    assert main(['download', NAME, 'ESC_light_x4', '--dir', str(tmp_path), '--base-url', server.url]) == 0
    out = capsys.readouterr().out
    assert f'downloaded: {tmp_path / NAME}' in out and 'already there' in out
    assert main(['download', '--list']) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in RELEASES) and 'options/test/test_ESC_DFLIP_x2.yml' in listing


def test_registry_matches_the_release_and_the_options():
    names = {f'ESC_{kind}_X{scale}.pth' for kind in ('DIV2K', 'light', 'FP', 'DFLIP') for scale in (2, 3, 4)}
    names |= {f'ESC_XL_DF2K_X{scale}_FT.pth' for scale in (2, 3, 4)} | {'ESC_Real_X4_GAN.pth'}
    assert set(RELEASES) == names
    assert find_release('esc_div2k_x4.PTH').options == 'options/test/test_ESC_x4.yml'
    assert (find_release('ESC_DIV2K_X4').set5_psnr, find_release('ESC_DIV2K_X4').urban100_psnr) == (32.68, 27.07)
    assert find_release('ESC_XL_DF2K_X2_FT').set5_psnr is None


# ---------------------------------------------------------------- test options on the sets that exist

def _bicubic_test_options(root, datasets):
    return dict(name='sets', model_type='ESCModel', scale=4, num_gpu=0, datasets=datasets,
                network_g=dict(type='Bicubic', upscaling_factor=4), path=dict(pretrain_network_g=None),
                val=dict(save_img=False, metrics=dict(psnr=dict(type='calculate_psnr', crop_border=4))))


def test_missing_and_nulled_test_sets_are_dropped(tmp_path):
    from esc_arch.options.test_sets import drop_missing_test_sets
    from helpers import make_pairs, paired_dataset

    present = paired_dataset(make_pairs(tmp_path / 'Here', count=1), {})
    gone = dict(present, name='Gone', dataroot_gt=str(tmp_path / 'Gone' / 'HR'))
    options = _bicubic_test_options(tmp_path, {'test_1': present, 'test_2': gone, 'test_3': None})
    notices = drop_missing_test_sets(options)
    assert list(options['datasets']) == ['test_1']
    assert notices == [f'skipping Gone: datasets:test_2:dataroot_gt not found: {tmp_path / "Gone" / "HR"}']
    # --force_yml datasets:Here=~ names the set rather than its key: it adds a null key Here
    options['datasets'] = {'test_1': present, 'test_2': dict(present, name='Also'), 'Here': None}
    assert drop_missing_test_sets(options) == [] and list(options['datasets']) == ['test_2']
    options['datasets'] = {'test_2': gone}
    with pytest.raises(OptionsError, match='no test set is left to run .*test_2:dataroot_gt not found'):
        drop_missing_test_sets(options)


@pytest.mark.slow
def test_basicsr_test_runs_on_the_sets_that_exist(tmp_path, monkeypatch, capsys, fresh_basicsr_logger):
    from helpers import make_pairs, paired_dataset, write_yaml

    monkeypatch.chdir(tmp_path)
    present = paired_dataset(make_pairs(tmp_path / 'Here', count=1), {})
    other = paired_dataset(make_pairs(tmp_path / 'Other', count=1), {})
    gone = dict(present, name='Gone', dataroot_lq=str(tmp_path / 'Gone' / 'LR'))
    options = write_yaml(tmp_path / 'test.yml', _bicubic_test_options(
        tmp_path, {'test_1': present, 'test_2': gone, 'test_3': other}))
    assert main(['test', '-opt', options, '--force_yml', 'datasets:test_3=~']) == 0
    err = capsys.readouterr().err
    assert 'basicsr test: skipping Gone: datasets:test_2:dataroot_lq not found' in err
    log = next((tmp_path / 'results' / 'sets').glob('test_sets_*.log')).read_text()
    assert 'Validation Here' in log and 'Other' not in log and 'Gone' not in log
    assert main(['test', '-opt', options, '--force_yml', 'datasets:test_1=~', 'datasets:test_3=~']) == 2
    assert 'error: no test set is left to run' in capsys.readouterr().err


def test_readme_zoo_table_and_test_options_match_the_registry():
    import yaml

    from esc_arch.zoo import PRETRAINED_DIR, markdown_table

    repo = Path(__file__).resolve().parents[1]
    assert markdown_table() in (repo / 'README.md').read_text()
    for release in RELEASES.values():
        options = yaml.safe_load((repo / release.options).read_text())
        assert options['path']['pretrain_network_g'] == f'{PRETRAINED_DIR}/{release.name}', release.options
        assert options['scale'] == release.scale
