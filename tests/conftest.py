import os

import pytest

from helpers import make_awkward_corpus


@pytest.fixture(autouse=True)
def _isolated_work_dir(tmp_path, monkeypatch):
    # No test may write into the user's ~/.smr.
    monkeypatch.setenv("SMR_WORK_DIR", str(tmp_path / "default-work"))
    # Nor into ~/.smr's notification subscriptions and event queues.
    monkeypatch.setenv("SMR_HOME", str(tmp_path / "smr-home"))


@pytest.fixture
def platform_name():
    return os.environ.get("SMR_TEST_PLATFORM", "local")


@pytest.fixture
def corpus(tmp_path):
    return make_awkward_corpus(tmp_path)


from seaweed import seaweed  # noqa: E402,F401  (session fixture: a real S3 server)
