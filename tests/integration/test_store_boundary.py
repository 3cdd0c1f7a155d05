"""ExpManager.store_call: the public boundary through which Experiment and Recorder call MLflow."""

from __future__ import annotations

import pytest

from qroll import ExpManager
from qroll.errors import DataError, RecordError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    home = tmp_path_factory.mktemp("boundary")
    return ExpManager(f"sqlite:///{home}/mlflow.db", artifact_root=str(home / "artifacts"))


def test_an_mlflow_error_becomes_one_record_error_line(store):
    with pytest.raises(RecordError) as info, store.store_call("fetching", " for run nope"):
        store.client.get_run("nope")
    message = str(info.value)
    assert message.startswith(f"fetching failed for run nope in {store.display_uri}: ")
    assert "\n" not in message
    assert info.value.__cause__ is not None and not isinstance(info.value.__cause__, RecordError)


def test_qroll_errors_pass_through_unchanged(store):
    raised = DataError("the data is gone")
    with pytest.raises(DataError) as info, store.store_call("reading"):
        raise raised
    assert info.value is raised


def test_recorder_calls_name_their_run(store):
    rec = store.get_exp("boundary").start_recorder("r")
    rec.end("FINISHED")
    with pytest.raises(RecordError, match=rf"^log_params failed for run {rec.id} in "):
        rec.log_params(**{"p": "a"})
        rec.log_params(**{"p": "b"})  # MLflow refuses to change a logged parameter
