"""Tests of dnnlib.util: EasyDict, objects by name, format_time, open_url (paths, file://,
http(s) through a local server with caching and atomic writes), Logger."""

import hashlib
import http.server
import os
import pathlib
import socket
import sys
import threading

import pytest

import dnnlib
from dnnlib import util

#----------------------------------------------------------------------------

def test_easydict_items_are_attributes():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d == {'a': 1, 'b': 2} and d.a == 1 and d['b'] == 2
    del d.a
    assert 'a' not in d
    with pytest.raises(AttributeError):
        _ = d.missing
    assert getattr(d, 'missing', 'default') == 'default'
    with pytest.raises(AttributeError):
        del d.missing

#----------------------------------------------------------------------------

def test_get_obj_by_name_finds_nested_attributes():
    import json.decoder
    assert util.get_obj_by_name('json.decoder.JSONDecoder') is json.decoder.JSONDecoder
    assert util.get_obj_by_name('json.JSONDecoder.decode') is json.decoder.JSONDecoder.decode
    assert util.get_obj_by_name('os.path.join') is os.path.join
    assert util.get_obj_by_name('dict') is dict

def test_get_obj_by_name_errors_name_the_object():
    with pytest.raises(ValueError, match="json.decoder.NoSuchThing.*no attribute 'NoSuchThing'"):
        util.get_obj_by_name('json.decoder.NoSuchThing')
    with pytest.raises(ValueError, match='no_such_package_xyz'):
        util.get_obj_by_name('no_such_package_xyz.Thing')

def test_construct_and_call_by_name():
    kwargs = dnnlib.EasyDict(class_name='fractions.Fraction', numerator=3, denominator=6)
    import fractions
    assert util.construct_class_by_name(**kwargs) == fractions.Fraction(1, 2)
    assert util.call_func_by_name(2, 10, func_name='builtins.pow') == 1024
    with pytest.raises(ValueError, match='class_name'):
        util.construct_class_by_name(1)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('seconds', [0, 7, 59, 60, 65, 3599, 3600, 3723, 86399, 86400, 200000])
def test_format_time_against_arithmetic(seconds):
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    if seconds < 60:
        expected = f'{s}s'
    elif seconds < 3600:
        expected = f'{m}m {s:02d}s'
    elif seconds < 86400:
        expected = f'{h}h {m:02d}m {s:02d}s'
    else:
        expected = f'{d}d {h:02d}h {m:02d}m'
    assert util.format_time(seconds) == expected

#----------------------------------------------------------------------------

def test_make_cache_dir_path_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path))
    assert util.make_cache_dir_path('downloads', 'x') == os.path.join(str(tmp_path), 'downloads', 'x')
    monkeypatch.delenv('DNNLIB_CACHE_DIR')
    assert util.make_cache_dir_path('a') == os.path.join(os.path.expanduser('~'), '.cache', 'dnnlib', 'a')

#----------------------------------------------------------------------------
# open_url: local files.

def test_open_url_reads_paths_and_file_urls(tmp_path):
    path = tmp_path / 'with space.bin'
    path.write_bytes(b'\x00payload')
    with util.open_url(str(path)) as f:
        assert f.read() == b'\x00payload'
    with util.open_url(path.as_uri()) as f:  # file:///.../with%20space.bin
        assert f.read() == b'\x00payload'
    assert util.open_url(path.as_uri(), return_filename=True) == str(path)

def test_open_url_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pkl'):
        util.open_url(str(tmp_path / 'nope.pkl'))

#----------------------------------------------------------------------------
# open_url: http through a local server.

class _Server:
    """A local HTTP server in a thread; `routes` maps a path to (status, body, declared length)."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                status, body, length = server.routes.get(self.path, (404, b'not found', None))
                self.send_response(status)
                self.send_header('Content-Length', str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()

@pytest.fixture
def server():
    s = _Server()
    yield s
    s.stop()

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

#----------------------------------------------------------------------------

def test_open_url_downloads_once_then_serves_cache_offline(server, tmp_path):
    body = os.urandom(3000)
    server.routes['/net/model.pkl'] = (200, body, None)
    url = server.url + '/net/model.pkl'
    with util.open_url(url, cache_dir=str(tmp_path), verbose=False) as f:
        assert f.read() == body
    # Cached under md5(url)_basename.
    cached = tmp_path / (hashlib.md5(url.encode()).hexdigest() + '_model.pkl')
    assert cached.read_bytes() == body
    assert server.requests == ['/net/model.pkl']

    server.stop()  # Now offline: the cache must answer.
    with util.open_url(url, cache_dir=str(tmp_path), verbose=False) as f:
        assert f.read() == body
    assert util.open_url(url, cache_dir=str(tmp_path), return_filename=True) == str(cached)

def test_open_url_default_cache_is_dnnlib_cache_dir(server, tmp_path, monkeypatch):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path))
    server.routes['/a.txt'] = (200, b'abc', None)
    path = util.open_url(server.url + '/a.txt', return_filename=True, verbose=False)
    assert pathlib.Path(path).parent == tmp_path / 'downloads'
    assert pathlib.Path(path).read_bytes() == b'abc'

def test_open_url_without_cache_writes_nothing(server, tmp_path):
    server.routes['/b.bin'] = (200, b'xyz', None)
    with util.open_url(server.url + '/b.bin', cache_dir=str(tmp_path), cache=False, verbose=False) as f:
        assert f.read() == b'xyz'
    assert list(tmp_path.iterdir()) == []

def test_open_url_truncated_download_leaves_no_file(server, tmp_path):
    # The server promises 1000 bytes and sends 10: no partial file may appear in the cache.
    server.routes['/trunc.pkl'] = (200, b'0123456789', 1000)
    with pytest.raises(OSError, match='trunc.pkl'):
        util.open_url(server.url + '/trunc.pkl', cache_dir=str(tmp_path), num_attempts=2, verbose=False)
    assert list(tmp_path.iterdir()) == []
    assert server.requests == ['/trunc.pkl'] * 2  # Retried.

def test_open_url_http_404_is_not_retried(server, tmp_path):
    with pytest.raises(OSError, match='404'):
        util.open_url(server.url + '/missing.pkl', cache_dir=str(tmp_path), num_attempts=5, verbose=False)
    assert server.requests == ['/missing.pkl']

def test_open_url_offline_error_says_how_to_fetch_by_hand(tmp_path):
    url = f'http://127.0.0.1:{_free_port()}/pretrained/ffhq.pkl'
    with pytest.raises(OSError) as info:
        util.open_url(url, cache_dir=str(tmp_path), num_attempts=2, verbose=False)
    message = str(info.value)
    expected_path = os.path.join(str(tmp_path), hashlib.md5(url.encode()).hexdigest() + '_ffhq.pkl')
    assert url in message and expected_path in message and 'by hand' in message
    assert list(tmp_path.iterdir()) == []

#----------------------------------------------------------------------------
# Logger.

def test_logger_tees_and_restores_streams(tmp_path, capsys):
    log = tmp_path / 'log.txt'
    before_out, before_err = sys.stdout, sys.stderr
    with util.Logger(str(log)) as logger:
        assert sys.stdout is not before_out
        print('to stdout')
        print('to stderr', file=sys.stderr)
        logger.write('direct\n')
    assert sys.stdout is before_out and sys.stderr is before_err
    print('after close')
    text = log.read_text()
    assert text == 'to stdout\nto stderr\ndirect\n'
    captured = capsys.readouterr()
    assert captured.out == 'to stdout\ndirect\nafter close\n'
    assert captured.err == 'to stderr\n'  # stderr stays stderr.

def test_logger_append_mode_and_idempotent_close(tmp_path):
    log = tmp_path / 'log.txt'
    log.write_text('old\n')
    logger = util.Logger(str(log), file_mode='a')
    print('new')
    logger.close()
    logger.close()
    assert log.read_text() == 'old\nnew\n'

#----------------------------------------------------------------------------
