"""Registry: locate through MPITRAIN_DATA, the cache, a download (checked against the
sha256), and a not-found message that says what to do. No test touches the network
beyond 127.0.0.1."""
import bz2
import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest

from mpitrain.data import DATASETS, DataError, RemoteDataset, locate, open_dataset
from mpitrain.data import registry

TEXT = b"+1 1:0.5 3:1\n-1 2:2\n+1 3:-1\n"
SHA = hashlib.sha256(TEXT).hexdigest()


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Empty data and cache directories, named by the environment variables."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    monkeypatch.setenv("MPITRAIN_DATA", str(data))
    monkeypatch.setenv("MPITRAIN_CACHE", str(cache))
    return data, cache


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "tiny.svm").write_bytes(TEXT)
    handler = functools.partial(QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def register(monkeypatch, url, sha256=SHA, n_features=5, file="tiny.svm"):
    entry = RemoteDataset("tiny", file, 3, n_features, sha256=sha256, url=url)
    monkeypatch.setitem(DATASETS, "tiny", entry)
    return entry


def test_registry_entries():
    for name in ("w8a", "a9a", "rcv1.binary", "real-sim", "epsilon"):
        entry = DATASETS[name]
        assert entry.url == registry.BASE_URL + entry.file
        assert entry.url.startswith("https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/binary/")
        assert entry.n_samples > 0 and entry.n_features > 0
        assert entry.compression in (None, "bz2")
        assert entry.file.endswith(".bz2") == (entry.compression == "bz2")
    assert DATASETS["w8a"].sha256 == "b464b4f6ce6a5d9e181ffc793e19a04751036273722312398ef7673705014902"
    assert (DATASETS["w8a"].n_samples, DATASETS["w8a"].n_features) == (49749, 300)
    assert DATASETS["real-sim"].plain_file == "real-sim"


def test_locate_in_data_dir_first(places, monkeypatch):
    data, cache = places
    register(monkeypatch, "file:///nonexistent/tiny.svm")
    (data / "tiny.svm").write_bytes(TEXT)
    cache.mkdir()
    (cache / "tiny.svm").write_bytes(TEXT)
    assert locate("tiny") == data / "tiny.svm"


def test_locate_in_cache(places, monkeypatch):
    _, cache = places
    register(monkeypatch, "file:///nonexistent/tiny.svm")
    cache.mkdir()
    (cache / "tiny.svm").write_bytes(TEXT)
    assert locate("tiny") == cache / "tiny.svm"
    monkeypatch.delenv("MPITRAIN_DATA")
    assert locate("tiny") == cache / "tiny.svm"


def test_locate_checks_known_sha256_of_local_file(places, monkeypatch):
    data, _ = places
    register(monkeypatch, "file:///nonexistent/tiny.svm")
    (data / "tiny.svm").write_bytes(TEXT + b"+1 1:1\n")
    with pytest.raises(DataError, match="sha256"):
        locate("tiny")


def test_download_with_good_checksum(places, server, monkeypatch):
    _, cache = places
    register(monkeypatch, server + "tiny.svm")
    path = locate("tiny")
    assert path == cache / "tiny.svm" and path.read_bytes() == TEXT
    assert sorted(p.name for p in cache.iterdir()) == ["tiny.svm"]   # no temporary left
    data = open_dataset("tiny")
    assert data.n_features == 5                                     # padded to the registry's
    np.testing.assert_array_equal(data.labels, [1.0, -1.0, 1.0])
    assert data.fingerprint == f"libsvm:tiny:sha256={SHA}"


def test_download_with_bad_checksum_leaves_nothing(places, server, monkeypatch):
    _, cache = places
    register(monkeypatch, server + "tiny.svm", sha256="0" * 64)
    with pytest.raises(DataError, match="sha256 mismatch: expected 0{64}, got " + SHA):
        locate("tiny")
    assert list(cache.iterdir()) == []


def test_download_from_file_url(places, tmp_path, monkeypatch):
    source = tmp_path / "source.svm"
    source.write_bytes(TEXT)
    register(monkeypatch, source.as_uri(), sha256=None)
    assert locate("tiny").read_bytes() == TEXT


def test_not_found_message(places, server, monkeypatch):
    data, cache = places
    url = server + "missing.svm"
    register(monkeypatch, url, file="missing.svm")
    with pytest.raises(DataError) as caught:
        locate("tiny")
    message = str(caught.value)
    assert message.startswith("data set 'tiny' not found: put missing.svm at ")
    assert str(data / "missing.svm") in message and str(cache / "missing.svm") in message
    assert url in message and "404" in message
    monkeypatch.delenv("MPITRAIN_DATA")
    with pytest.raises(DataError, match="set MPITRAIN_DATA"):
        locate("tiny")


def test_unknown_names(places):
    with pytest.raises(DataError, match="unknown data set 'nope'; known: a9a"):
        locate("nope")
    with pytest.raises(DataError, match="neither a file nor a known data set"):
        open_dataset("nope")


def test_compressed_entry_prefers_plain_copy(places, monkeypatch):
    data, _ = places
    entry = RemoteDataset("tinybz", "tiny.svm.bz2", 3, 4, compression="bz2",
                          url="file:///nonexistent/tiny.svm.bz2")
    monkeypatch.setitem(DATASETS, "tinybz", entry)
    (data / "tiny.svm.bz2").write_bytes(bz2.compress(TEXT))
    assert locate("tinybz") == data / "tiny.svm.bz2"
    packed = open_dataset("tinybz", dtype=np.float32)
    (data / "tiny.svm").write_bytes(TEXT)
    assert locate("tinybz") == data / "tiny.svm"
    plain = open_dataset("tinybz", dtype=np.float32)
    assert packed.n_features == plain.n_features == 4
    np.testing.assert_array_equal(packed.features.toarray(), plain.features.toarray())
    assert packed.fingerprint.startswith("libsvm:tinybz:size=")
