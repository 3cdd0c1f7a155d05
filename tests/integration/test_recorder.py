"""ExpManager / Experiment / Recorder on a real MLflow SQLite store (one store per module: MLflow's
schema migrations take seconds)."""

from __future__ import annotations

import datetime as dt
import pickle
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qroll.errors import ExperimentNotFoundError, LoadObjectError, RecordError, TrackingError
from qroll.messages import mask_credentials, scrub
from qroll.record import Experiment, ExpManager, Recorder


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qroll_home")


@pytest.fixture(scope="module")
def manager(home: Path) -> ExpManager:
    return ExpManager(home=home)


@pytest.fixture
def exp(manager: ExpManager, request: pytest.FixtureRequest) -> Experiment:
    """A fresh experiment per test, so listings see only that test's runs."""
    return manager.get_exp(f"{request.node.name}-{uuid.uuid4().hex[:6]}")


# -- the store ---------------------------------------------------------------------------------


def test_default_store_lives_in_home(manager: ExpManager, home: Path, exp: Experiment) -> None:
    assert manager.uri == f"sqlite:///{home.resolve() / 'mlflow.db'}"
    assert (home / "mlflow.db").is_file()
    with exp.start_recorder() as rec:
        rec.save_objects(**{"x.pkl": 1})
    # Artifacts land under <home>/artifacts, not in MLflow's ./mlruns of the current directory.
    assert Path(rec.artifact_uri.removeprefix("file://")).is_relative_to(home.resolve() / "artifacts")
    assert list((home / "artifacts").rglob("x.pkl"))


def test_get_exp_creates_then_finds_the_same_experiment(manager: ExpManager) -> None:
    first = manager.get_exp("same-name")
    again = manager.get_exp("same-name", create=False)
    assert first == again and again.name == "same-name"
    assert "same-name" in [e.name for e in manager.list_experiments()]


def test_missing_experiment_names_the_name_and_the_existing_ones(manager: ExpManager) -> None:
    manager.get_exp("present-one")
    with pytest.raises(ExperimentNotFoundError, match="'absent-one'.*present-one"):
        manager.get_exp("absent-one", create=False)


def test_deleted_experiment_is_gone_and_says_how_to_restore(manager: ExpManager) -> None:
    manager.get_exp("to-delete")
    manager.delete_exp("to-delete")
    assert "to-delete" not in [e.name for e in manager.list_experiments()]
    with pytest.raises(RecordError, match="deleted.*mlflow experiments restore"):
        manager.get_exp("to-delete")
    with pytest.raises(ExperimentNotFoundError):
        manager.delete_exp("never-existed")


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://nobody:hunter2@127.0.0.1:1/x",
        "http://nobody:hunter2@127.0.0.1:9",
        "sqlite:////nonexistent/dir/x.db",
    ],
)
def test_unreachable_store_fails_fast_with_masked_uri(uri: str) -> None:
    start = time.monotonic()
    with pytest.raises(TrackingError) as info:
        ExpManager(uri)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert elapsed < 10, f"took {elapsed:.1f}s"
    assert "hunter2" not in message and "\n" not in message
    assert mask_credentials(uri) in message


def test_file_store_is_refused_with_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(TrackingError, match="sqlite:///"):
        ExpManager(f"file://{tmp_path}/mlruns")


def test_explicit_uri_and_artifact_root(tmp_path: Path, manager: ExpManager, home: Path) -> None:
    # Same database as the module's manager (no second migration), other artifact root.
    other = ExpManager(manager.uri, artifact_root=str(tmp_path / "elsewhere"))
    with other.get_exp("rooted").start_recorder() as rec:
        rec.save_objects(**{"y.pkl": 2})
    assert list((tmp_path / "elsewhere").rglob("y.pkl"))
    assert repr(other).startswith("ExpManager(uri='sqlite:")


def test_mask_credentials() -> None:
    assert mask_credentials("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db"
    assert mask_credentials("see http://a:b@h:1/x and https://h2/?token=abc&x=1") == (
        "see http://a:***@h:1/x and https://h2/?token=***&x=1"
    )
    assert mask_credentials("sqlite:////tmp/a@b.db") == "sqlite:////tmp/a@b.db"
    # A driver repeating the bare password is scrubbed too.
    assert scrub("auth failed for pw s3cr3t", "postgresql://u:s3cr3t@h/db") == "auth failed for pw ***"


# -- a recorder's content ----------------------------------------------------------------------


def test_objects_and_json_round_trip(exp: Experiment) -> None:
    frame = pd.DataFrame(
        {"score": [0.1, np.nan]},
        index=pd.MultiIndex.from_tuples([(pd.Timestamp("2020-01-02"), "A"), (pd.Timestamp("2020-01-02"), "B")],
                                        names=["datetime", "instrument"]),
    )
    task = {"model": {"class": "LGBModel"}, "seg": (pd.Timestamp("2020-01-02"), dt.date(2020, 3, 1))}
    with exp.start_recorder("r") as rec:
        rec.save_objects(**{"pred.pkl": frame, "params.pkl": {"a": [1, 2]}})
        rec.save_objects(artifact_path="sig_analysis", **{"ic.pkl": pd.Series([0.5, 0.25])})
        rec.save_json("task.json", task)
    again = exp.get_recorder(rec.id)
    pd.testing.assert_frame_equal(again.load_object("pred.pkl"), frame)
    assert again.load_object("params.pkl") == {"a": [1, 2]}
    assert again.load_object("sig_analysis/ic.pkl").tolist() == [0.5, 0.25]
    assert again.load_object("task.json") == {"model": {"class": "LGBModel"}, "seg": ["2020-01-02", "2020-03-01"]}
    assert again.list_artifacts() == ["params.pkl", "pred.pkl", "sig_analysis/ic.pkl", "task.json"]
    assert again.list_artifacts("sig_analysis") == ["sig_analysis/ic.pkl"]


def test_load_object_errors_name_the_artifact_and_run(exp: Experiment, tmp_path: Path) -> None:
    with exp.start_recorder() as rec:
        rec.save_objects(artifact_path="folder", **{"a.pkl": 1})
        bad = tmp_path / "broken.pkl"
        bad.write_bytes(b"not a pickle")
        rec.client.log_artifact(rec.id, str(bad))
    with pytest.raises(LoadObjectError, match=rf"run {rec.id} has no artifact 'pred.pkl'.*folder/a.pkl"):
        rec.load_object("pred.pkl")
    with pytest.raises(LoadObjectError, match="'folder' .* is a folder"):
        rec.load_object("folder")
    with pytest.raises(LoadObjectError, match="'broken.pkl' of run .* cannot be read"):
        rec.load_object("broken.pkl")
    with pytest.raises(RecordError, match="relative path"):
        rec.save_objects(**{"../escape.pkl": 1})


def test_params_metrics_tags(exp: Experiment) -> None:
    with exp.start_recorder("r", tags={"stage": "x"}) as rec:
        many = {f"p{i:03d}": i for i in range(250)}  # > 100: several log_batch calls
        rec.log_params(**many, long="v" * 7000, url="postgresql://me:topsecret@db/x")
        rec.log_metrics(IC=0.05, ICIR=0.5)
        rec.log_metrics(step=3, IC=0.07)
        curve = np.linspace(1.0, 0.1, 1500)  # > 1000: several log_batch calls
        rec.log_metric_history("l2.valid", curve)
        rec.set_tags(train_status="begin_task_train", conn="mysql://me:topsecret@db/x")
        # The in-memory view is kept up to date without reading the store.
        assert rec.metrics["IC"] == 0.07 and rec.metrics["l2.valid"] == pytest.approx(0.1)
    stored = exp.get_recorder(rec.id)
    params = stored.list_params()
    assert params["p042"] == "42" and len([k for k in params if k.startswith("p")]) == 250
    assert len(params["long"]) == 6000 and params["long"].endswith("...[truncated 1025 chars]")
    assert params["url"] == "postgresql://me:***@db/x"
    assert stored.list_metrics() == {"IC": 0.07, "ICIR": 0.5, "l2.valid": pytest.approx(0.1)}
    history = stored.client.get_metric_history(rec.id, "l2.valid")
    assert len(history) == 1500 and sorted(m.step for m in history) == list(range(1500))
    tags = stored.list_tags()
    assert tags["stage"] == "x" and tags["train_status"] == "begin_task_train"
    assert tags["conn"] == "mysql://me:***@db/x" and "topsecret" not in str(tags)
    with pytest.raises(RecordError, match="'bad' is 'x', not a number"):
        stored.log_metrics(bad="x")


def test_param_logged_twice_with_another_value_is_a_record_error(exp: Experiment) -> None:
    with exp.start_recorder() as rec:
        rec.log_params(a=1)
        with pytest.raises(RecordError, match=f"log_params failed for run {rec.id}"):
            rec.log_params(a=2)


def test_info_and_identity(exp: Experiment) -> None:
    rec = exp.start_recorder()
    assert rec.status == Recorder.STATUS_R == "RUNNING" and rec.name == "mlflow_recorder"
    info = rec.info
    assert set(info) == {"class", "id", "name", "experiment_id", "start_time", "end_time", "status"}
    assert info["experiment_id"] == exp.id and info["end_time"] is None
    assert info["start_time"].tzinfo is not None
    same = exp.get_recorder(rec.id)
    assert same == rec and len({rec, same}) == 1
    clone = pickle.loads(pickle.dumps(rec))
    assert clone == rec and clone.status == "RUNNING"
    rec.end()
    assert rec.status == "FINISHED" and rec.end_time is not None and rec.end_time >= rec.start_time


# -- status transitions ------------------------------------------------------------------------


def test_context_manager_statuses(exp: Experiment) -> None:
    with exp.start_recorder("ok") as ok:
        pass
    with pytest.raises(ValueError, match="boom"), exp.start_recorder("failed") as failed:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), exp.start_recorder("killed") as killed:
        raise KeyboardInterrupt
    for rec, status in ((ok, "FINISHED"), (failed, "FAILED"), (killed, "KILLED")):
        assert rec.status == status
        assert exp.get_recorder(rec.id).status == status
        assert exp.get_recorder(rec.id).end_time is not None


def test_explicit_end_inside_context_is_kept(exp: Experiment) -> None:
    with exp.start_recorder() as rec:
        rec.end("FAILED")
    assert exp.get_recorder(rec.id).status == "FAILED"
    with pytest.raises(RecordError, match="'DONE' cannot end a run"):
        rec.end("DONE")


def test_get_recorder_of_another_experiment_or_missing(manager: ExpManager, exp: Experiment) -> None:
    other = manager.get_exp(exp.name + "-other")
    rec = other.start_recorder()
    with pytest.raises(RecordError, match=f"not an active run of experiment {exp.name!r}"):
        exp.get_recorder(rec.id)
    with pytest.raises(RecordError, match="has no recorder 'nope'"):
        exp.get_recorder("nope")


# -- listing -----------------------------------------------------------------------------------


def test_list_recorders_order_paging_and_filters(manager: ExpManager, exp: Experiment) -> None:
    client = manager.client
    base = int(time.time() * 1000)
    ids = {}
    # Three runs share one start time, so the run id decides their order.
    for i, (offset, status, parity) in enumerate(
        [(0, "FINISHED", "even"), (5, "FAILED", "odd"), (5, "FINISHED", "even"), (5, "FINISHED", "odd"),
         (9, "KILLED", "even"), (2, "FINISHED", "odd"), (7, "FINISHED", "even")]
    ):
        run = client.create_run(exp.id, start_time=base + offset, tags={"parity": parity, "i": str(i)},
                                run_name=f"r{i}")
        client.log_batch(run.info.run_id, params=[], metrics=[])
        client.set_terminated(run.info.run_id, status)
        ids[run.info.run_id] = (offset, status, parity)
    deleted = exp.start_recorder("deleted")
    exp.delete_recorder(deleted.id)

    expected = sorted(ids, key=lambda rid: (-ids[rid][0], rid))
    manager.page_size = 2  # 7 runs over 4 pages
    try:
        listed = exp.list_recorders()
        assert [r.id for r in listed] == expected
        # Listing fills tags in: no store call needed to read them.
        assert all(r.tags["parity"] == ids[r.id][2] for r in listed)
        finished_even = exp.list_recorders(status={"FINISHED"}, tags={"parity": "even"})
        assert [r.id for r in finished_even] == [i for i in expected if ids[i][1:] == ("FINISHED", "even")]
        two_statuses = exp.list_recorders(status={"FAILED", "KILLED"})
        assert {r.status for r in two_statuses} == {"FAILED", "KILLED"} and len(two_statuses) == 2
        assert [r.id for r in exp.list_recorders(max_results=3)] == expected[:3]
        assert exp.list_recorders(status=set()) == []
    finally:
        manager.page_size = ExpManager.page_size
    with pytest.raises(RecordError, match="'DONE'"):
        exp.list_recorders(status={"DONE"})


def test_list_recorders_tag_values_with_quotes(exp: Experiment) -> None:
    tricky = ["it's", 'say "hi"', "both ' and \"", "plain"]
    for value in tricky:
        exp.start_recorder(tags={"note": value, "qroll.task_hash": "h-" + value}).end()
    for value in tricky:
        found = exp.list_recorders(tags={"note": value, "qroll.task_hash": "h-" + value})
        assert [r.tags["note"] for r in found] == [value]


def test_list_recorders_carries_params_and_metrics(exp: Experiment) -> None:
    with exp.start_recorder() as rec:
        rec.log_params(step=40)
        rec.log_metrics(IC=0.03)
    (listed,) = exp.list_recorders()
    assert listed.params == {"step": "40"} and listed.metrics == {"IC": 0.03}
    assert listed.status == "FINISHED" and listed.name == "mlflow_recorder"


def test_sqlite_store_keeps_artifacts_beside_its_file_not_in_the_current_directory(tmp_path, monkeypatch):
    from qroll.record import ExpManager

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    manager = ExpManager(f"sqlite:///{tmp_path}/store/mlflow.db")
    with manager.get_exp("beside").start_recorder() as rec:
        rec.save_objects(**{"x.pkl": [1, 2]})
    assert rec.load_object("x.pkl") == [1, 2]
    assert list(cwd.iterdir()) == []
    assert any((tmp_path / "store" / "artifacts").rglob("x.pkl"))
