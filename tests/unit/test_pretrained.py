"""Pretrained weights: the real download code against a loopback HTTP server.

The server serves files the tests make; PRETRAINED's entries are replaced by small
sources that describe them (size, MD5 or layout), and MASKRCNN_WEIGHTS_URL points the
download at the server, as a site mirror would.
"""
import hashlib
import http.server
import json
import os
import threading

import h5py
import numpy as np
import pytest

from maskrcnnlib import pretrained
from maskrcnnlib.errors import ModelFileError

CONTENT = b"weights " * 5000


class Handler(http.server.BaseHTTPRequestHandler):
    files = {}  # path -> (bytes, declared length or None)
    requests = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        Handler.requests.append(self.path)
        if self.path not in Handler.files:
            self.send_error(404, "Not Found")
            return
        data, declared = Handler.files[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(declared if declared is not None else len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        # a declared length longer than the data: the server closes early (a cut transfer)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    Handler.files, Handler.requests = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MASKRCNN_WEIGHTS_URL", "http://127.0.0.1:{}/mirror/".format(
        httpd.server_address[1]))
    monkeypatch.setenv("MASKRCNN_WEIGHTS_DIR", str(tmp_path / "cache"))
    yield Handler
    httpd.shutdown()
    httpd.server_close()


def use_source(monkeypatch, **fields):
    source = pretrained.Source(**{"file_name": "test_weights.h5", "url": "unused",
                                  "size": None, "md5": None, "layout": None, **fields})
    monkeypatch.setitem(pretrained.PRETRAINED, "test", source)
    return source


def cache_listing(tmp_path):
    folder = tmp_path / "cache"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_a_download_is_checked_kept_and_then_used_without_network(server, monkeypatch,
                                                                    tmp_path):
    use_source(monkeypatch, md5=hashlib.md5(CONTENT).hexdigest(), size=len(CONTENT))
    server.files["/mirror/test_weights.h5"] = (CONTENT, None)
    seen = []
    path = pretrained.pretrained_file("test", progress=lambda done, total: seen.append(
        (done, total)))
    assert path == str(tmp_path / "cache" / "test_weights.h5")
    assert open(path, "rb").read() == CONTENT
    assert seen[-1] == (len(CONTENT), len(CONTENT))
    assert cache_listing(tmp_path) == ["test_weights.h5"]
    server.files.clear()  # cached: asked again, no request reaches the server
    assert pretrained.pretrained_file("test") == path
    assert server.requests == ["/mirror/test_weights.h5"]


def test_404_names_the_address_the_file_and_the_cache(server, monkeypatch, tmp_path):
    use_source(monkeypatch)
    with pytest.raises(ModelFileError) as error:
        pretrained.pretrained_file("test")
    text = str(error.value)
    assert "HTTP 404" in text and "/mirror/test_weights.h5" in text
    assert str(tmp_path / "cache" / "test_weights.h5") in text
    assert cache_listing(tmp_path) == []


def test_a_wrong_checksum_is_refused_and_nothing_kept(server, monkeypatch, tmp_path):
    use_source(monkeypatch, md5=hashlib.md5(CONTENT).hexdigest())
    server.files["/mirror/test_weights.h5"] = (CONTENT[:-1] + b"X", None)
    with pytest.raises(ModelFileError, match="not the published test_weights.h5: MD5"):
        pretrained.pretrained_file("test")
    assert cache_listing(tmp_path) == []


def test_a_cut_transfer_is_refused_and_nothing_kept(server, monkeypatch, tmp_path):
    use_source(monkeypatch)
    server.files["/mirror/test_weights.h5"] = (CONTENT[:1000], len(CONTENT))
    with pytest.raises(ModelFileError) as error:
        pretrained.pretrained_file("test")
    assert "test_weights.h5" in str(error.value)
    assert "stopped after 1000 of {} bytes".format(len(CONTENT)) in str(error.value)
    assert cache_listing(tmp_path) == []


def test_a_wrong_size_is_refused(server, monkeypatch, tmp_path):
    use_source(monkeypatch, size=len(CONTENT) + 1)
    server.files["/mirror/test_weights.h5"] = (CONTENT, None)
    with pytest.raises(ModelFileError, match="{} bytes where the published file has {}".format(
            len(CONTENT), len(CONTENT) + 1)):
        pretrained.pretrained_file("test")
    assert cache_listing(tmp_path) == []


def test_offline_says_where_to_put_the_file(monkeypatch, tmp_path):
    use_source(monkeypatch)
    monkeypatch.setenv("MASKRCNN_WEIGHTS_DIR", str(tmp_path / "cache"))
    # a port nobody listens on: connection refused, as on a machine without network
    monkeypatch.setenv("MASKRCNN_WEIGHTS_URL", "http://127.0.0.1:9/")
    with pytest.raises(ModelFileError) as error:
        pretrained.pretrained_file("test")
    text = str(error.value)
    assert "Cannot download http://127.0.0.1:9/test_weights.h5" in text and "offline" in text
    assert "put it at {}".format(tmp_path / "cache" / "test_weights.h5") in text
    assert cache_listing(tmp_path) == []


def test_a_bad_cached_file_is_named_not_replaced(monkeypatch, tmp_path):
    use_source(monkeypatch, size=10)
    monkeypatch.setenv("MASKRCNN_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "test_weights.h5").write_bytes(b"short")
    with pytest.raises(ModelFileError, match="cached .* is not the published file"):
        pretrained.pretrained_file("test")
    assert (tmp_path / "test_weights.h5").read_bytes() == b"short"


def write_layout_file(path, layers, renamed=None):
    """An .h5 in the Keras 2 layout with the layers' weight shapes (unwritten data: small)."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
        for name, weights in layers:
            group = f.create_group(name)
            names = [(renamed or {}).get(weight, weight) for weight, _ in weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S") \
                if names else np.zeros((0,), "S1")
            for weight, (_, shape) in zip(names, weights):
                group.create_dataset(weight, shape=tuple(shape), dtype="float32")


def test_the_coco_layout_check_accepts_the_recorded_layout_only(tmp_path):
    """The shipped layout of mask_rcnn_coco.h5 (394 layers; Keras 2.0 may have named the
    weights conv1_1/kernel:0): a file with it passes; one changed shape or a missing
    layer is named."""
    layers = json.load(open(pretrained.LAYOUT_FILE))["layers"]
    assert len(layers) == 394 and layers[2][0] == "conv1"
    good = tmp_path / "good.h5"
    write_layout_file(good, layers, renamed={"conv1/kernel:0": "conv1_1/kernel:0"})
    assert pretrained.layout_difference(good, pretrained.LAYOUT_FILE) is None

    changed = [(name, [(w, [s[0], s[1], s[2], 32] if w == "conv1/kernel:0" else s)
                       for w, s in weights]) for name, weights in layers]
    write_layout_file(tmp_path / "changed.h5", changed)
    assert "layer conv1 holds" in pretrained.layout_difference(tmp_path / "changed.h5",
                                                              pretrained.LAYOUT_FILE)
    write_layout_file(tmp_path / "short.h5", [l for l in layers if l[0] != "mrcnn_mask"])
    assert pretrained.layout_difference(tmp_path / "short.h5", pretrained.LAYOUT_FILE) == \
        "1 layers missing, e.g. mrcnn_mask"


def test_the_published_sources():
    """The published addresses and checks (what a user's machine will fetch)."""
    coco, imagenet = pretrained.PRETRAINED["coco"], pretrained.PRETRAINED["imagenet"]
    assert coco.url.startswith("https://github.com/matterport/Mask_RCNN/releases/download/")
    assert coco.url.endswith("/mask_rcnn_coco.h5") and coco.size == 257557808
    assert imagenet.md5 == "a268eb855778b3df3c7506639542a6af"
    assert imagenet.url.endswith("/" + imagenet.file_name)
