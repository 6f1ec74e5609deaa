"""``basicsr download`` against a local HTTP server on 127.0.0.1 (no test touches the internet)."""
import fcntl
import hashlib
import http.server
import io
import re
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from esc_arch import zoo
from esc_arch.archs import build_preset
from esc_arch.cli import main
from esc_arch.download import BASE_URL_VARIABLE, CHECKSUMS_FILE, download_release, download_third_party
from esc_arch.errors import DownloadError, OptionsError
from esc_arch.zoo import PRETRAINED_DIR, RELEASES, ThirdPartyFile, find_release, required_file_status

NAME = 'ESC_light_X4.pth'
REPO = Path(__file__).resolve().parents[1]
SERVER_LIFETIME_SECONDS = 60  # the server stops itself after this, should a test leave it running


def _weights(preset, scale, seed=0):
    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save({'params_ema': build_preset(preset, scale).state_dict()}, buffer)
    return buffer.getvalue()


@pytest.fixture(scope='module')
def content():
    """ESC-light x4 weights, as the release file should hold."""
    return _weights('ESC-light', 4)


class ReleaseHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (name -> bytes) with single ``bytes=N-`` ranges; records the Range headers.

    The server's attributes make it misbehave: ``cut_after`` (bytes sent before closing), ``send_length``,
    ``content_type``, ``range_from_zero`` (a 206 that restarts at 0), ``piece`` and ``delay`` (a slow server).
    """

    def do_GET(self):  # noqa: N802 (http.server's name)
        server = self.server
        server.ranges.append(self.headers.get('Range'))
        server.requested.set()
        content = server.files.get(self.path.lstrip('/'))
        if content is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range') or '')
        if match and server.honour_ranges:
            start = int(match.group(1))
            if start >= len(content):
                self.send_response(416)
                self.send_header('Content-Range', f'bytes */{len(content)}')
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            start = 0 if server.range_from_zero else start
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(content) - 1}/{len(content)}')
        else:
            self.send_response(200)
        body = content[start:]
        self.send_header('Content-Type', server.content_type)
        if server.send_length:
            self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        body = body[:server.cut_after] if server.cut_after is not None else body
        try:
            for offset in range(0, len(body), server.piece):
                self.wfile.write(body[offset:offset + server.piece])
                self.wfile.flush()
                time.sleep(server.delay)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server(content):
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), ReleaseHandler)
    httpd.files, httpd.ranges, httpd.honour_ranges, httpd.cut_after = {NAME: content}, [], True, None
    httpd.send_length, httpd.content_type, httpd.range_from_zero = True, 'application/octet-stream', False
    httpd.piece, httpd.delay, httpd.requested = 1 << 20, 0.0, threading.Event()
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


def _names(folder):
    return sorted(path.name for path in folder.iterdir())


def test_download_keeps_weights_of_the_right_network_and_records_sha256(server, tmp_path, content):
    path, downloaded = download_release('esc_light_x4', tmp_path, server.url)
    assert downloaded and path == tmp_path / NAME
    assert path.read_bytes() == content
    assert _checksums(tmp_path) == f'{hashlib.sha256(content).hexdigest()}  {NAME}\n'
    assert _names(tmp_path) == [NAME, CHECKSUMS_FILE]  # no .part or .lock left
    # Again: the file is there and passes the checks, nothing is fetched.
    requests = len(server.ranges)
    assert download_release(NAME, tmp_path, server.url) == (path, False)
    assert len(server.ranges) == requests


def test_interrupted_download_is_kept_and_resumed_with_a_range(server, tmp_path, content):
    server.cut_after = 100_000
    with pytest.raises(DownloadError, match='resume'):
        download_release(NAME, tmp_path, server.url)
    partial = tmp_path / f'{NAME}.part'
    assert not (tmp_path / NAME).exists()  # nothing under the final name until complete
    assert partial.read_bytes() == content[:100_000]
    server.cut_after = None
    path, downloaded = download_release(NAME, tmp_path, server.url)
    assert server.ranges[-1] == 'bytes=100000-'
    assert downloaded and path.read_bytes() == content and not partial.exists()


def test_server_ignoring_the_range_restarts_from_zero(server, tmp_path, content):
    server.honour_ranges = False
    (tmp_path / f'{NAME}.part').write_bytes(b'stale bytes')
    path, _ = download_release(NAME, tmp_path, server.url)
    assert path.read_bytes() == content


def test_a_206_that_restarts_at_zero_is_not_appended(server, tmp_path, content):
    (tmp_path / f'{NAME}.part').write_bytes(content[:100_000])
    server.range_from_zero = True
    path, _ = download_release(NAME, tmp_path, server.url)
    assert server.ranges == ['bytes=100000-'] and path.read_bytes() == content


def test_a_206_at_another_offset_is_refused(server, tmp_path, content, monkeypatch):
    (tmp_path / f'{NAME}.part').write_bytes(content[:100_000])
    monkeypatch.setattr(ReleaseHandler, 'send_header', _shifted_content_range(ReleaseHandler.send_header))
    with pytest.raises(DownloadError, match='sent bytes 5-.* when bytes from 100000 were asked for'):
        download_release(NAME, tmp_path, server.url)
    assert not (tmp_path / NAME).exists()


def _shifted_content_range(send_header):
    def send(self, key, value):
        if key == 'Content-Range' and not value.startswith('bytes */'):
            value = re.sub(r'bytes \d+-', 'bytes 5-', value)
        send_header(self, key, value)
    return send


def test_complete_partial_file_is_finished_after_a_416(server, tmp_path, content):
    (tmp_path / f'{NAME}.part').write_bytes(content)
    path, downloaded = download_release(NAME, tmp_path, server.url)
    assert downloaded and path.read_bytes() == content and server.ranges == [f'bytes={len(content)}-']


def test_a_416_does_not_make_a_junk_partial_file_complete(server, tmp_path, content):
    partial = tmp_path / f'{NAME}.part'
    partial.write_bytes(b'x' * len(content))  # the right size, wrong bytes
    with pytest.raises(DownloadError, match=f'is not ESC-light x4 weights, as {NAME} should be'):
        download_release(NAME, tmp_path, server.url)
    assert _names(tmp_path) == []
    partial.write_bytes(content + b'extra')  # longer than the file: the server's size disagrees
    with pytest.raises(DownloadError, match='bytes but the partial download held'):
        download_release(NAME, tmp_path, server.url)
    assert _names(tmp_path) == []


def test_an_html_page_is_refused(server, tmp_path):
    server.files[NAME], server.content_type = b'<html><body>Sign in</body></html>', 'text/html; charset=utf-8'
    with pytest.raises(DownloadError, match='sent a web page'):
        download_release(NAME, tmp_path, server.url)
    server.content_type = 'application/octet-stream'  # the same page, mislabelled
    with pytest.raises(DownloadError, match='is not ESC-light x4 weights.*not a readable PyTorch checkpoint'):
        download_release(NAME, tmp_path, server.url)
    assert _names(tmp_path) == []


def test_weights_of_another_network_or_scale_are_refused(server, tmp_path):
    server.files[NAME] = _weights('ESC-light', 2)
    with pytest.raises(DownloadError, match='is not ESC-light x4 weights.*it holds ESC-light x2 weights'):
        download_release(NAME, tmp_path, server.url)
    assert _names(tmp_path) == []


def test_a_body_cut_short_without_content_length_is_refused(server, tmp_path, content):
    server.send_length, server.cut_after = False, len(content) // 2
    with pytest.raises(DownloadError, match='is not ESC-light x4 weights'):
        download_release(NAME, tmp_path, server.url)
    assert _names(tmp_path) == []
    server.cut_after = None  # the whole body, still without a length: kept once it loads
    assert download_release(NAME, tmp_path, server.url)[0].read_bytes() == content


def test_a_junk_file_already_there_is_reported_not_checked_or_recorded(server, tmp_path):
    (tmp_path / NAME).write_bytes(b'junk')
    with pytest.raises(DownloadError, match=f'{NAME} \\(already there\\) is not ESC-light x4 weights'):
        download_release(NAME, tmp_path, server.url)
    assert _names(tmp_path) == [NAME] and (tmp_path / NAME).read_bytes() == b'junk'  # the user's file is kept
    assert server.ranges == []


def test_download_differing_from_recorded_sha256_is_refused(server, tmp_path):
    download_release(NAME, tmp_path, server.url)
    (tmp_path / NAME).unlink()
    server.files[NAME] = _weights('ESC-light', 4, seed=1)  # replaced upstream by other weights
    with pytest.raises(DownloadError, match='SHA-256 .*recorded in .*changed since'):
        download_release(NAME, tmp_path, server.url)
    assert _names(tmp_path) == [CHECKSUMS_FILE]


def test_corrupted_local_file_is_detected(server, tmp_path, content):
    path, _ = download_release(NAME, tmp_path, server.url)
    path.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    with pytest.raises(DownloadError, match=f'{NAME} has SHA-256 .*delete'):
        download_release(NAME, tmp_path, server.url)


def test_one_download_of_a_file_at_a_time(server, tmp_path, content):
    server.piece, server.delay = 200_000, 0.05  # about 0.7 s
    results = {}
    first = threading.Thread(target=lambda: results.update(first=download_release(NAME, tmp_path, server.url)))
    first.start()
    assert server.requested.wait(10)
    with pytest.raises(DownloadError, match=f'another download of {NAME} .* is running'):
        download_release(NAME, tmp_path, server.url)
    first.join(30)
    assert results['first'] == (tmp_path / NAME, True) and (tmp_path / NAME).read_bytes() == content
    assert len(server.ranges) == 1 and _names(tmp_path) == [NAME, CHECKSUMS_FILE]


def test_a_lock_held_by_another_process_is_respected(server, tmp_path):
    with open(tmp_path / f'{NAME}.lock', 'a+b') as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DownloadError, match='another download'):
            download_release(NAME, tmp_path, server.url)
    assert server.ranges == [] and not (tmp_path / f'{NAME}.part').exists()


def test_the_overall_deadline_stops_a_slow_server(server, tmp_path):
    server.piece, server.delay = 4096, 0.05  # a trickle
    started = time.monotonic()
    with pytest.raises(DownloadError, match='ran past its deadline .* resume'):
        download_release(NAME, tmp_path, server.url, deadline_seconds=0.5)
    assert time.monotonic() - started < 10
    assert (tmp_path / f'{NAME}.part').stat().st_size > 0 and not (tmp_path / NAME).exists()


def test_environment_variable_sets_the_base_url(server, tmp_path, monkeypatch, content):
    monkeypatch.setenv(BASE_URL_VARIABLE, server.url)
    assert download_release(NAME, tmp_path)[0].read_bytes() == content


def test_http_error_and_unknown_name(server, tmp_path):
    server.files.clear()
    with pytest.raises(DownloadError, match='HTTP 404'):
        download_release(NAME, tmp_path, server.url)
    with pytest.raises(DownloadError, match='HTTP 404 .*not confirmed to be in the release'):
        download_release('ESC_Real_X4_MSE', tmp_path, server.url)
    with pytest.raises(DownloadError, match='did you mean ESC_light_X4.pth'):
        download_release('ESC_lite_X4', tmp_path, server.url)


def test_the_authors_arbitrary_scale_checkpoint_is_checked_as_esc_lte(server, tmp_path):
    from esc_arch.archs import build_preset

    network = build_preset('ESC-LTE')
    buffer = io.BytesIO()
    torch.save({'model': {'name': 'lte', 'args': {}, 'sd': network.state_dict()}, 'epoch': 1000}, buffer)
    server.files['esc_lte.pth'] = buffer.getvalue()
    assert download_release('ESC_LTE', tmp_path, server.url) == (tmp_path / 'esc_lte.pth', True)
    server.files['ESC_DIV2K_X4.pth'] = buffer.getvalue()  # the right file under another row's name
    with pytest.raises(DownloadError, match='is not ESC x4 weights'):
        download_release('ESC_DIV2K_X4', tmp_path, server.url)


def _closed_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _one_line_error(capsys, *arguments):
    code = main(['download', *arguments])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith('basicsr download: error: ')
    assert '\n' not in err and 'Traceback' not in err
    return err


def test_cli_without_connection_is_one_line_and_leaves_no_folder(tmp_path, capsys):
    folder = tmp_path / 'experiments' / 'pretrained_models'
    err = _one_line_error(capsys, NAME, '--dir', str(folder), '--base-url', f'http://127.0.0.1:{_closed_port()}')
    assert err.startswith('basicsr download: error: cannot download') and 'no internet connection' in err
    assert _names(tmp_path) == []  # the folders it made for the download are gone again


@pytest.mark.parametrize('base_url', ['ftp://127.0.0.1/x', 'not a url', 'http://127.0.0.1:99999/', 'http:///x',
                                      'http://[::1'])
def test_cli_bad_base_url_is_one_line(tmp_path, capsys, base_url):
    assert 'bad base URL' in _one_line_error(capsys, NAME, '--dir', str(tmp_path), '--base-url', base_url)
    assert _names(tmp_path) == []


def test_cli_checksums_file_problems_are_one_line(server, tmp_path, capsys):
    (tmp_path / CHECKSUMS_FILE).mkdir()
    assert 'is a folder' in _one_line_error(capsys, NAME, '--dir', str(tmp_path), '--base-url', server.url)
    (tmp_path / CHECKSUMS_FILE).rmdir()
    (tmp_path / CHECKSUMS_FILE).write_bytes(b'\xff\xfe not text')
    assert 'not UTF-8' in _one_line_error(capsys, NAME, '--dir', str(tmp_path), '--base-url', server.url)
    assert _names(tmp_path) == [CHECKSUMS_FILE]


def test_cli_downloads_with_progress_lines_and_lists(server, tmp_path, capsys):
    assert main(['download', NAME, 'ESC_light_x4', '--dir', str(tmp_path), '--base-url', server.url]) == 0
    captured = capsys.readouterr()
    assert f'downloaded and checked: {tmp_path / NAME}' in captured.out and 'already there (checked)' in captured.out
    assert re.search(rf'{NAME}: [\d.]+ MiB of [\d.]+ MiB \(100%\)', captured.err)  # not a terminal: lines
    assert main(['download', '--list']) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in RELEASES) and 'options/test/test_ESC_DFLIP_x2.yml' in listing
    assert listing.count('not confirmed') == 3 and 'publishes no hashes' in listing
    assert 'vgg19-dcbb9e9d.pth' in listing and 'only the SHA-256 prefix dcbb9e9d is published' in listing


def test_registry_matches_the_release_and_the_options():
    names = {f'ESC_{kind}_X{scale}.pth' for kind in ('DIV2K', 'light', 'FP', 'DFLIP') for scale in (2, 3, 4)}
    names |= {f'ESC_XL_DF2K_X{scale}_FT.pth' for scale in (2, 3, 4)} | {'ESC_Real_X4_GAN.pth'}
    assert {name for name, release in RELEASES.items() if release.confirmed} == names
    assert {name for name, release in RELEASES.items() if not release.confirmed} == {
        'ESC_Real_X4_MSE.pth', 'ESC_XL_DF2K_X2_PT.pth', 'esc_lte.pth'}
    assert find_release('esc_div2k_x4.PTH').options == 'options/test/test_ESC_x4.yml'
    assert (find_release('ESC_DIV2K_X4').set5_psnr, find_release('ESC_DIV2K_X4').urban100_psnr) == (32.68, 27.07)
    assert find_release('ESC_XL_DF2K_X2_FT').set5_psnr is None


# ---------------------------------------------------------------- third-party files (VGG19 for the perceptual loss)

def test_vgg19_entry_is_torchvisions_file():
    vgg = zoo.VGG19
    assert vgg.name == f'vgg19-{vgg.sha256_prefix}.pth' and vgg.url.endswith(f'/{vgg.name}')
    assert vgg.name.removesuffix('.pth').split('-')[-1] == vgg.sha256_prefix  # torchvision's naming


@pytest.fixture
def tiny_third_party(server, tmp_path, monkeypatch):
    """A small third-party file whose name carries its hash prefix, served by the local server."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.chdir(tmp_path)
    buffer = io.BytesIO()
    torch.save({'features.0.weight': torch.ones(2, 3)}, buffer)
    data = buffer.getvalue()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    item = ThirdPartyFile(f'tiny-{prefix}.pth', server.url + f'tiny-{prefix}.pth', prefix, 'the tests',
                          shapes={'features.0.weight': (2, 3)}, other_places=(f'{PRETRAINED_DIR}/tiny-{prefix}.pth', ))
    monkeypatch.setitem(zoo.THIRD_PARTY_FILES, item.name, item)
    server.files[item.name] = data
    return item


def test_third_party_file_goes_to_the_hub_cache_checked_against_its_prefix(server, tmp_path, tiny_third_party,
                                                                          capsys):
    item = tiny_third_party
    hub_file = tmp_path / 'torch' / 'hub' / 'checkpoints' / item.name
    (status, ) = required_file_status([item.name])
    assert not status.present and status.path == hub_file and status.command == f'basicsr download {item.name}'
    assert main(['download', item.alias]) == 0
    assert f'downloaded and checked: {hub_file}' in capsys.readouterr().out and hub_file.is_file()
    assert required_file_status([item.name])[0].present
    assert download_third_party(item.name) == (hub_file, False)

    hub_file.unlink()
    server.files[item.name] = server.files[item.name] + b'\0'  # another file: its hash does not start so
    with pytest.raises(DownloadError, match=f'not {item.sha256_prefix}... as published'):
        download_third_party(item.name, base_url=server.url)
    assert not hub_file.exists()


def test_third_party_file_without_the_expected_tensors_is_refused(tmp_path, tiny_third_party, monkeypatch):
    item = tiny_third_party
    other_shapes = ThirdPartyFile(item.name, item.url, item.sha256_prefix, '', shapes={'features.0.weight': (9, )})
    monkeypatch.setitem(zoo.THIRD_PARTY_FILES, item.name, other_shapes)
    with pytest.raises(DownloadError, match=r'features.0.weight should have shape \(9,\), found \(2, 3\)'):
        download_third_party(item.name)


def test_required_file_status_finds_basicsrs_own_place(tmp_path, tiny_third_party):
    item = tiny_third_party
    basicsr_place = tmp_path / item.other_places[0]
    basicsr_place.parent.mkdir(parents=True)
    basicsr_place.write_bytes(b'x')
    (status, ) = required_file_status([item.name])
    assert status.present and status.path == Path(item.other_places[0])
    vgg = next(status for status in required_file_status() if status.name == zoo.VGG19.name)
    assert vgg.command == 'basicsr download vgg19-dcbb9e9d.pth' and 'PerceptualLoss' in vgg.needed_for
    with pytest.raises(KeyError):
        required_file_status(['resnet50'])


def test_download_command_names_the_command_for_a_path():
    assert zoo.download_command(f'{PRETRAINED_DIR}/ESC_light_X4.pth') == 'basicsr download ESC_light_X4.pth'
    assert zoo.download_command('weights/ESC_light_X4.pth') == 'basicsr download ESC_light_X4.pth --dir weights'
    assert zoo.download_command('anywhere/vgg19-dcbb9e9d.pth') == 'basicsr download vgg19-dcbb9e9d.pth'
    assert zoo.download_command('experiments/train_x/models/net_g_latest.pth') is None


# ---------------------------------------------------------------- test options on the sets that exist

def _bicubic_test_options(root, datasets):
    return dict(name='sets', model_type='ESCModel', scale=4, num_gpu=0, datasets=datasets,
                network_g=dict(type='Bicubic', upscaling_factor=4), path=dict(pretrain_network_g=None),
                val=dict(save_img=False, metrics=dict(psnr=dict(type='calculate_psnr', crop_border=4))))


def test_missing_and_nulled_test_sets_are_dropped(tmp_path):
    from helpers import make_pairs, paired_dataset

    from esc_arch.options.test_sets import drop_missing_test_sets

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


def test_readme_zoo_table_matches_the_registry():
    from esc_arch.zoo import markdown_table

    assert markdown_table() in (REPO / 'README.md').read_text()


def test_options_read_each_release_file_where_download_puts_it():
    import yaml

    for release in RELEASES.values():
        if release.options is None:
            continue
        text = (REPO / release.options).read_text()
        options = yaml.safe_load(text)
        assert options['scale'] == release.scale
        expected = f'{PRETRAINED_DIR}/{release.name}'
        if release.options.startswith('options/test/'):
            assert options['path']['pretrain_network_g'] == expected, release.options
        else:  # a training start, offered by an override in the options' comment
            assert f'--force_yml path:pretrain_network_g={expected}\n' in text, release.options


def test_no_options_file_runs_a_folder_into_a_file_name():
    """The authors' Real test options lack the slash after ``pretrained_models``; every path here has it."""
    for path in sorted((REPO / 'options').rglob('*.yml')):
        assert not re.search(r'pretrained_models[^/\s]', path.read_text()), path


def test_gan_stage_starts_from_the_downloaded_stage_1_weights(tmp_path, monkeypatch):
    import yaml

    from esc_arch.checkpoint import load_into_network, load_state_dict
    from esc_arch.download import check_release_file

    from basicsr.utils.registry import ARCH_REGISTRY

    release = RELEASES['ESC_Real_X4_MSE.pth']
    options = yaml.safe_load((REPO / release.options).read_text())
    network_options = dict(options['network_g'])
    network = ARCH_REGISTRY.get(network_options.pop('type'))(**network_options)
    torch.manual_seed(0)
    stage_1 = build_preset('ESC-Real', 4)
    path = tmp_path / PRETRAINED_DIR / release.name
    path.parent.mkdir(parents=True)
    torch.save({'params': stage_1.state_dict(), 'params_ema': stage_1.state_dict()}, path)
    check_release_file(path, release)  # what `basicsr download` requires of it
    load_into_network(network, load_state_dict(path, options['path']['param_key_g']))
    assert all(torch.equal(value, stage_1.state_dict()[key]) for key, value in network.state_dict().items())
