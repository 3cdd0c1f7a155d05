"""State is explicit: no module writes ``os.environ`` (one documented exception), only
``qroll.home`` reads qroll's variables, and the feature cache's writer threads are daemons that
``wait()`` joins, their errors raised there (and reported at exit when nobody waited).

The first two tests read the source with ``ast``, as ``test_import_graph.py`` does; the scanner is
itself checked on a snippet holding every pattern it must find.
"""

from __future__ import annotations

import ast
import contextlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import qroll
from qroll.data.cache import FeatureCache, feature_cache_key
from qroll.data.source import open_source
from qroll.errors import CacheError, ConfigValueError
from qroll.home import data_uri, qroll_home, store_wait

SRC = Path(qroll.__file__).parent
ROOT = SRC.parents[1]
ENV_READER = "home.py"
# MLflow reads its HTTP client's settings only from the environment (see the function's docstring).
ALLOWED_WRITES = {("record/store.py", "use_http_client_defaults")}

WRITE_METHODS = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__", "__delitem__"}
KEYED_METHODS = {"get", "__getitem__", "__contains__", *WRITE_METHODS}
OS_WRITERS = {"putenv", "unsetenv"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    function: str
    kind: str  # "write", "read" (of a QROLL_ variable) or "whole" (the whole environment read)


def _qroll_constants() -> set[str]:
    """Names bound anywhere in qroll to a string naming a qroll variable (``STORE_WAIT_ENV``)."""
    names = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str) and node.value.value.startswith("QROLL_")):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _is_environ(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in ("environ", "environb") and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id in ("environ", "environb")  # from os import environ


def _is_os_call(node: ast.AST, names: set[str]) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in names and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id in names


def _names_qroll(node: ast.AST | None, constants: set[str]) -> bool:
    """Whether a key expression names a ``QROLL_`` variable (a literal, an f-string, a constant)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value.startswith("QROLL_")
    if isinstance(node, ast.JoinedStr):
        return bool(node.values) and _names_qroll(node.values[0], constants)
    if isinstance(node, ast.Name):
        return node.id in constants
    if isinstance(node, ast.Attribute):
        return node.attr in constants
    return False


def scan(source: str, path: str, constants: set[str]) -> list[Finding]:
    """Every write to the environment, and every read of a qroll variable, in ``source``."""
    tree = ast.parse(source)
    parents: dict[ast.AST, ast.AST] = {}
    function: dict[ast.AST, str] = {}

    def link(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            parents[child] = node
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else where
            function[child] = inner
            link(child, inner)

    link(tree, "<module>")
    found: list[Finding] = []

    def add(node: ast.AST, kind: str) -> None:
        found.append(Finding(path, getattr(node, "lineno", 0), function.get(node, "<module>"), kind))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_os_call(node.func, OS_WRITERS):
            add(node, "write")
        elif (isinstance(node, ast.Call) and _is_os_call(node.func, {"getenv", "getenvb"})
              and (not node.args or _names_qroll(node.args[0], constants))):
            add(node, "read")
        if not _is_environ(node):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Subscript) and parent.value is node:
            if isinstance(parent.ctx, ast.Store | ast.Del):
                add(node, "write")
            elif _names_qroll(parent.slice, constants):
                add(node, "read")
        elif isinstance(parent, ast.Attribute) and parent.attr in KEYED_METHODS:
            call = parents.get(parent)
            if parent.attr in WRITE_METHODS:
                add(node, "write")
            elif isinstance(call, ast.Call) and (not call.args or _names_qroll(call.args[0], constants)):
                add(node, "read")
        elif isinstance(parent, ast.Compare) and node in parent.comparators:
            if _names_qroll(parent.left, constants):
                add(node, "read")
        else:  # items(), copy(), dict(os.environ), {**os.environ}, iteration: every variable
            add(node, "whole")
    return found


@pytest.fixture(scope="module")
def findings() -> list[Finding]:
    constants = _qroll_constants()
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        out.extend(scan(path.read_text(encoding="utf-8"), rel, constants))
    return out


SNIPPET = '''
import os
from os import environ
NAME = "QROLL_X"
os.environ["A"] = "1"                     # 5 write
os.environ.setdefault("A", "1")           # 6 write
os.environ.update(A="1")                  # 7 write
os.environ.pop("A", None)                 # 8 write
del os.environ["A"]                       # 9 write
os.putenv("A", "1")                       # 10 write
environ["B"] = "2"                        # 11 write
os.environ.get("QROLL_HOME")              # 12 read
os.environ["QROLL_DATA"]                  # 13 read
os.getenv(NAME)                           # 14 read
"QROLL_STORE_WAIT" in os.environ          # 15 read
os.environ.get(f"QROLL_{NAME}")           # 16 read
{k: v for k, v in os.environ.items()}     # 17 whole
os.environ.get("HOME")                    # 18 fine: not qroll's
"MLFLOW_LOGGING_LEVEL" in os.environ      # 19 fine
env = {**os.environ}                      # 20 whole
'''


def test_the_scanner_finds_every_pattern():
    got = {(f.line, f.kind) for f in scan(SNIPPET, "snippet.py", {"NAME"})}
    assert got == {*((n, "write") for n in range(5, 12)), *((n, "read") for n in range(12, 17)),
                   (17, "whole"), (20, "whole")}


def test_no_module_writes_os_environ(findings):
    writes = [f for f in findings if f.kind == "write"]
    unexpected = [f for f in writes if (f.path, f.function) not in ALLOWED_WRITES]
    assert not unexpected, f"os.environ written outside the documented exception: {unexpected}"
    # The exception is still there (else drop it from ALLOWED_WRITES): the scan does see writes.
    assert {(f.path, f.function) for f in writes} == ALLOWED_WRITES


def test_only_qroll_home_reads_qroll_variables(findings):
    reads = [f for f in findings if f.kind in ("read", "whole") and f.path != ENV_READER]
    assert not reads, f"qroll's variables read outside qroll/home.py (pass the value down instead): {reads}"
    assert {f.function for f in findings if f.path == ENV_READER and f.kind == "read"} == {
        "qroll_home", "data_uri", "store_wait"}


def test_the_settings_come_from_the_argument_else_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("QROLL_HOME", str(tmp_path / "env"))
    monkeypatch.setenv("QROLL_DATA", "synthetic://?seed=1")
    monkeypatch.setenv("QROLL_STORE_WAIT", "12.5")
    assert qroll_home() == tmp_path / "env" and qroll_home(tmp_path / "arg") == tmp_path / "arg"
    assert data_uri() == "synthetic://?seed=1" and data_uri("qlib:///d") == "qlib:///d"
    assert store_wait() == 12.5 and store_wait(3) == 3.0
    monkeypatch.delenv("QROLL_HOME")
    monkeypatch.delenv("QROLL_DATA")
    monkeypatch.delenv("QROLL_STORE_WAIT")
    assert qroll_home() == Path("qroll_runs") and data_uri() is None and store_wait() == 60.0
    monkeypatch.setenv("QROLL_STORE_WAIT", "soon")
    with pytest.raises(ConfigValueError, match=r"\$QROLL_STORE_WAIT='soon' must be a number of seconds >= 0"):
        store_wait()
    with pytest.raises(ConfigValueError, match=r"store_wait=-1 must be a number of seconds >= 0"):
        store_wait(-1)


# -- the feature cache's writers -------------------------------------------------------------------

URI = "synthetic://?instruments=4&start=2015-01-01&end=2015-06-30&seed=2"
FEATURE = (["$close/Ref($close, 1) - 1"], ["RET1"])
LABEL = (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])


def test_wait_joins_the_daemon_writers(tmp_path):
    cache = FeatureCache(tmp_path / "features")
    cache.load(open_source(URI), "all", FEATURE, LABEL, background=True)
    writers = cache.writers
    assert len(writers) == 1 and writers[0].daemon and writers[0].name.startswith("qroll-cache-write-")
    cache.wait()
    assert cache.writers == () and not writers[0].is_alive()
    assert len(cache.info()) == 1


@pytest.mark.parametrize("how", ["directory_in_the_way", "read_only_folder"])
def test_a_writer_error_surfaces_in_wait(tmp_path, how):
    source = open_source(URI)
    key = feature_cache_key(source, "all", FEATURE, LABEL)
    cache = FeatureCache(tmp_path / "features")
    cache.folder.mkdir()
    if how == "read_only_folder":
        cache.folder.chmod(0o555)
        probe = cache.folder / "probe"
        with contextlib.suppress(PermissionError):
            probe.touch()
        if probe.exists():  # root, with its right to override file permissions
            probe.unlink()
            cache.folder.chmod(0o755)
            pytest.skip("this user (root) writes into a read-only folder, so chmod cannot make the write "
                        "fail; the directory_in_the_way case fails it for root too")
        why = "PermissionError"
    else:
        # The rename of the written data file onto a directory fails, for any user.
        (cache.folder / f"{key}.bin").mkdir()
        why = "IsADirectoryError"
    try:
        frame = cache.load(source, "all", FEATURE, LABEL, background=True)
        assert len(frame) > 0  # the features are computed and returned whatever the write does
        with pytest.raises(CacheError, match=rf"{cache.folder}: 1 entry could not be written: {key[:12]}… \({why}"):
            cache.wait()
        assert cache.writers == ()
        cache.wait()  # each failure is raised once
        assert cache.info() == [] and not list(cache.folder.glob("*.tmp"))
    finally:
        cache.folder.chmod(0o755)


EXIT = """
import sys
from qroll.data.cache import FeatureCache
from qroll.data.source import open_source
cache = FeatureCache.at(sys.argv[1])
if len(sys.argv) > 2:  # break the write: a directory where the data file goes
    (cache.folder / (sys.argv[2] + ".bin")).mkdir(parents=True)
cache.load(open_source({uri!r}), "all", {feature!r}, {label!r}, background=True)
# no wait(): the interpreter's exit joins the writer
"""


@pytest.mark.parametrize("fail", [False, True], ids=["written", "failed"])
def test_a_process_that_exits_leaves_its_entry_written_or_says_why(tmp_path, fail):
    key = feature_cache_key(open_source(URI), "all", FEATURE, LABEL)
    code = EXIT.format(uri=URI, feature=FEATURE, label=LABEL)
    args = [sys.executable, "-c", code, str(tmp_path), *([key] if fail else [])]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    entries = FeatureCache(qroll_home(tmp_path) / "cache" / "features").info()
    if fail:
        assert entries == [] and "FeatureCacheWarning" in proc.stderr and key[:12] in proc.stderr
    else:
        assert [e.key for e in entries] == [key] and proc.stderr == ""
