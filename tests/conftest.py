"""Test setup: two CPU devices (set before jax is imported anywhere)."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from tests import jax_cache  # noqa: E402

jax_cache.configure(jax)

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir():
  """`../shared` beside the checkout; tests that need it skip without it."""
  if not SHARED.is_dir():
    pytest.skip(f"../shared not found at {SHARED}: real sequences/weights unavailable")
  return SHARED


@pytest.fixture(scope="session")
def otb_sample(shared_dir):
  path = shared_dir / "data" / "otb_sample"
  if not path.is_dir():
    pytest.skip(f"{path} not found: the real OTB sample sequences are unavailable")
  return path
