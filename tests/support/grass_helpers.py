"""Helpers for tests that work in the temporary GRASS project (tests/conftest.py)."""
import contextlib
import os
import uuid


def unique(prefix):
    """A map name no other test of the session uses."""
    return "{}_{}".format(prefix, uuid.uuid4().hex[:8])


@contextlib.contextmanager
def region_override(**bounds):
    """A region as this process' GRASS_REGION (the project's WIND is untouched)."""
    import grass.script as gs

    saved = os.environ.get("GRASS_REGION")
    os.environ["GRASS_REGION"] = gs.region_env(**bounds)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("GRASS_REGION", None)
        else:
            os.environ["GRASS_REGION"] = saved
