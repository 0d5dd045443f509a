"""Where XLA's compilation cache goes (maskrcnnlib.compilecache.enable)."""
import os

import tensorflow as tf

from maskrcnnlib import compilecache


def test_the_folder_is_per_tensorflow_version_and_cpu(tmp_path):
    environ = {"MASKRCNN_XLA_CACHE": str(tmp_path / "cache"),
               "TF_XLA_FLAGS": "--tf_xla_auto_jit=0"}
    folder = compilecache.enable(environ)
    assert os.path.isdir(folder)
    assert os.path.dirname(folder) == str(tmp_path / "cache")
    assert os.path.basename(folder) == "tf{}-{}".format(tf.__version__, compilecache.cpu_key())
    assert environ["TF_XLA_FLAGS"] == (
        "--tf_xla_auto_jit=0 --tf_xla_persistent_cache_directory=" + folder)
    assert compilecache.enable(environ) == folder  # once only
    assert environ["TF_XLA_FLAGS"].count("persistent_cache_directory") == 1


def test_the_default_folder_is_in_the_users_cache(tmp_path):
    environ = {"XDG_CACHE_HOME": str(tmp_path)}
    folder = compilecache.enable(environ)
    assert folder.startswith(str(tmp_path / "i.ann.maskrcnn" / "xla") + os.sep)
    assert environ["TF_XLA_FLAGS"] == "--tf_xla_persistent_cache_directory=" + folder


def test_a_users_own_cache_flag_is_kept_and_0_turns_it_off(tmp_path):
    own = "--tf_xla_persistent_cache_directory=/somewhere/else"
    environ = {"TF_XLA_FLAGS": own, "MASKRCNN_XLA_CACHE": str(tmp_path)}
    assert compilecache.enable(environ) == "/somewhere/else"
    assert environ["TF_XLA_FLAGS"] == own and not os.listdir(tmp_path)
    environ = {"MASKRCNN_XLA_CACHE": "0", "XDG_CACHE_HOME": str(tmp_path)}
    assert compilecache.enable(environ) is None
    assert "TF_XLA_FLAGS" not in environ and not os.listdir(tmp_path)


def test_no_cache_where_the_folder_cannot_be(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    environ = {"MASKRCNN_XLA_CACHE": str(blocker / "cache")}
    assert compilecache.enable(environ) is None and "TF_XLA_FLAGS" not in environ
    spaced = {"MASKRCNN_XLA_CACHE": str(tmp_path / "with space")}
    assert compilecache.enable(spaced) is None and "TF_XLA_FLAGS" not in spaced


def test_the_cpu_key_is_stable_and_short():
    assert compilecache.cpu_key() == compilecache.cpu_key()
    assert len(compilecache.cpu_key()) == 12
