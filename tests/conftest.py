"""Shared fixtures: the real CIFAR-10 JPEG pack (../shared/data beside the clone)."""

from pathlib import Path

import pytest

from kps.data import extract_jpeg_pack

REPO = Path(__file__).resolve().parents[1]
PACK = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="session")
def jpeg_root(tmp_path_factory) -> Path:
    """A data root holding the extracted JPEG pack: the repository's data/ when
    it is there, else a fresh extraction (verified) into a session folder."""
    if (REPO / "data" / "cifar10-jpeg" / "test" / "truck").is_dir():
        return REPO / "data"
    if not PACK.is_file():
        pytest.skip(f"CIFAR-10 JPEG pack not found at {PACK} (the shared data folder sits beside the clone in CI)")
    root = tmp_path_factory.mktemp("jpeg")
    extract_jpeg_pack(PACK, root)
    return root
