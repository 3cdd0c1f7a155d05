"""Qlib's feature expressions (``"Mean($close, 5)/$close"``): parse, size, evaluate over panels.

An expression is parsed into a small immutable tree of :class:`Field`, :class:`Const` and
:class:`Op` nodes. :func:`evaluate` computes it over *wide panels*, one 2-D array per field of shape
(days, instruments), for all instruments at once and with Qlib's numbers
(``reference/alpha158.md`` §3): element-wise operators in the operands' dtype (float32 data stays
float32), window operators in float64 over trailing windows of N rows with ``min_periods=1``.

Examples
--------
>>> import numpy as np
>>> str(parse("Ref($close,1) / $close"))
'Div(Ref($close,1),$close)'
>>> extent("Ref($close, -2)/Ref($close, -1) - 1")
(0, 2)
>>> close = np.array([[1.0], [2.0], [4.0]], dtype=np.float32)
>>> evaluate("Mean($close, 2)", {"close": close}).ravel().tolist()
[1.0, 1.5, 3.0]
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from qroll.data import ops
from qroll.errors import ExpressionError

__all__ = [
    "Const", "Evaluator", "Field", "Node", "Op", "evaluate", "extent", "fields_of", "look_ahead", "look_back",
    "parse",
]


@dataclass(frozen=True, slots=True)
class Field:
    """A stored field, ``$name`` (lower-case, without the ``$``)."""

    name: str

    def __str__(self) -> str:
        return f"${self.name}"


@dataclass(frozen=True, slots=True)
class Const:
    """A number literal; ints stay ints, as in Qlib (``2*$close`` multiplies by the int 2)."""

    value: int | float

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True, slots=True)
class Op:
    """An operator applied to its arguments (expressions or numbers)."""

    name: str
    args: tuple[Node, ...]

    def __str__(self) -> str:
        return f"{self.name}({','.join(str(a) for a in self.args)})"


Node: TypeAlias = "Field | Const | Op"
"""A parsed expression; ``str(node)`` is its canonical form (the cache key)."""

# name -> (operand count, number-parameter count)
_ELEMENTWISE = {
    "Abs": 1, "Sign": 1, "Log": 1, "Not": 1, "Neg": 1,
    "Add": 2, "Sub": 2, "Mul": 2, "Div": 2, "Power": 2, "Greater": 2, "Less": 2,
    "Gt": 2, "Ge": 2, "Lt": 2, "Le": 2, "Eq": 2, "Ne": 2, "And": 2, "Or": 2, "If": 3,
}
_ROLLING = {
    "Mean", "Sum", "Std", "Var", "Skew", "Kurt", "Max", "Min", "IdxMax", "IdxMin", "Med", "Mad",
    "Rank", "Count", "Delta", "Slope", "Rsquare", "Resi", "WMA", "EMA",
}
_PAIR = {"Corr", "Cov"}
OPERATORS = frozenset(_ELEMENTWISE) | _ROLLING | _PAIR | {"Ref", "Quantile"}

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<field>\$[A-Za-z_]\w*)"
    r"|(?P<name>[A-Za-z_]\w*)|(?P<op>>=|<=|==|!=|[-+*/()<>,&|]))"
)
_INFIX = {
    "|": ("Or", 1), "&": ("And", 2),
    ">": ("Gt", 0), "<": ("Lt", 0), ">=": ("Ge", 0), "<=": ("Le", 0), "==": ("Eq", 0), "!=": ("Ne", 0),
    "+": ("Add", 3), "-": ("Sub", 3), "*": ("Mul", 4), "/": ("Div", 4),
}


class _Parser:
    # Precedence climbing with Python's levels, since Qlib evaluates its strings as Python:
    # comparisons bind loosest, then |, &, + -, * /, unary minus.
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        stripped = text.rstrip()
        while pos < len(stripped):
            m = _TOKEN.match(stripped, pos)
            if m is None or m.end() == pos:
                raise ExpressionError(f"cannot parse {text!r} at character {pos}: {stripped[pos:pos + 10]!r}")
            kind = m.lastgroup or "op"
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            found = "the end" if tok is None else repr(tok[1])
            want = repr(value) if value else "more input"
            raise ExpressionError(f"cannot parse {self.text!r}: expected {want}, found {found}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.expr(0)
        if self.peek() is not None:
            raise ExpressionError(f"cannot parse {self.text!r}: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def expr(self, level: int) -> Node:
        left = self.unary()
        while True:
            tok = self.peek()
            if tok is None or tok[0] != "op" or tok[1] not in _INFIX:
                return left
            name, prec = _INFIX[tok[1]]
            if prec < level:
                return left
            self.take()
            right = self.expr(prec + 1)
            left = Op(name, (left, right))

    def unary(self) -> Node:
        tok = self.take()
        kind, value = tok
        if value == "-":
            operand = self.unary()
            if isinstance(operand, Const):
                return Const(-operand.value)
            return Op("Neg", (operand,))
        if value == "+":
            return self.unary()
        if value == "(":
            node = self.expr(0)
            self.take(")")
            return node
        if kind == "num":
            return Const(float(value) if any(c in value for c in ".eE") else int(value))
        if kind == "field":
            return Field(value[1:].lower())
        if kind == "name":
            return self.call(value)
        raise ExpressionError(f"cannot parse {self.text!r}: unexpected {value!r}")

    def call(self, name: str) -> Node:
        if name not in OPERATORS:
            raise ExpressionError(
                f"unknown operator {name!r} in {self.text!r}; supported: {', '.join(sorted(OPERATORS))}"
            )
        self.take("(")
        args: list[Node] = []
        if self.peek() != ("op", ")"):
            args.append(self.expr(0))
            while self.peek() == ("op", ","):
                self.take()
                args.append(self.expr(0))
        self.take(")")
        node = Op(name, tuple(args))
        _check_arity(node, self.text)
        return node


def _check_arity(node: Op, text: str) -> None:
    name, args = node.name, node.args
    if name in _ELEMENTWISE:
        want, consts = _ELEMENTWISE[name], 0
    elif name in _PAIR:
        want, consts = 3, 1
    elif name == "Quantile":
        want, consts = 3, 2
    else:  # Ref and rolling
        want, consts = 2, 1
    if len(args) != want:
        count = {1: "one", 2: "two", 3: "three"}[want]
        raise ExpressionError(f"{name} needs {count} arguments, got {len(args)} in {text!r}")
    for arg in args[want - consts:]:
        if not isinstance(arg, Const):
            raise ExpressionError(f"{name}'s window/parameter must be a number, got {arg} in {text!r}")


def parse(expr: str | Node) -> Node:
    """Parse a Qlib expression string into a tree (a tree is returned unchanged).

    Raises
    ------
    ExpressionError
        On a syntax error or an unknown operator.
    """
    if isinstance(expr, (Field, Const, Op)):
        return expr
    return _Parser(expr).parse()


def extent(expr: str | Node) -> tuple[int, int]:
    """Trading days of history (left) and future (right) that ``expr`` needs, as Qlib computes them.

    >>> extent("Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), 60)")
    (60, 0)
    """
    node = parse(expr)
    if isinstance(node, (Field, Const)):
        return 0, 0
    if node.name == "Ref":
        lft, rgt = extent(node.args[0])
        n = int(_const(node.args[1]))
        return max(lft + n, lft), max(rgt - n, rgt)
    if node.name in _ROLLING or node.name == "Quantile" or node.name in _PAIR:
        operands = node.args[:2] if node.name in _PAIR else node.args[:1]
        sizes = [extent(a) for a in operands]
        lft, rgt = max(s[0] for s in sizes), max(s[1] for s in sizes)
        window = _const(node.args[len(operands)])
        if window >= 1:
            return lft + int(window) - 1, rgt
        return lft, rgt
    sizes = [extent(a) for a in node.args]
    return max(s[0] for s in sizes), max(s[1] for s in sizes)


def look_ahead(expr: str | Node) -> int:
    """Trading days past "today" that ``expr`` reads at most: a label's horizon (0: it only looks back).

    ``Ref(x, -N)`` reads ``x`` N days ahead and nested offsets add up (``Ref(Ref($close, -2), 1)``
    looks 1 day ahead); every other operator only looks back, so it passes on the furthest look-ahead
    of its operands. This is the net reach; :func:`extent`'s right side is how many future days Qlib
    *loads*, which widens at every Ref and so can be larger (2 for that example).

    >>> look_ahead("Ref($close, -2)/Ref($close, -1) - 1")
    2
    >>> look_ahead("Mean($close, 5)/Ref($close, 1)")
    0

    Raises
    ------
    ExpressionError
        When the expression cannot be parsed or a Ref's offset is not an integer.
    """
    return max(0, _reach(parse(expr)))


def _reach(node: Node) -> int:
    # Days ahead of today that node reads at most; negative when it reads only the past.
    if isinstance(node, (Field, Const)):
        return 0
    if node.name == "Ref":
        offset = _const(node.args[1])
        if not isinstance(offset, int):
            raise ExpressionError(f"Ref's offset {offset!r} must be an integer in {node}")
        return _reach(node.args[0]) - offset
    return max(_reach(arg) for arg in node.args)


def look_back(expr: str | Node) -> int | None:
    """Trading days before "today" that ``expr`` reads at most; None when its memory is unbounded.

    The counterpart of :func:`look_ahead`: a value of ``expr`` on day t depends on the data of days
    ``t - look_back .. t + look_ahead`` only, so it can be computed from a warm-up of ``look_back``
    days (the feature cache extends an entry by new days that way). ``Ref(x, N)`` reads N days back
    and a window of N days N - 1 more, nested reaches adding up; a negative ``Ref`` offset reads
    ahead, so ``Ref(Mean($close, 5), -2)`` looks back 2 days only (:func:`extent`, Qlib's load
    range, says 4).

    None, unbounded, for an operator whose value depends on the whole series before it: ``EMA``
    (every past value keeps a weight), a window of N = 0 (expanding), ``Ref(x, 0)`` (the series'
    first value), and ``Slope``/``Rsquare``/``Resi`` over an operand that may be infinite (a
    division, a log, a power): Qlib's running sums keep an infinity for the rest of the series.
    Such an expression can only be computed over the whole history.

    >>> look_back("Mean($close, 5)/Ref($close, 1)")
    4
    >>> look_back("Ref($close, -2)/Ref($close, -1) - 1"), look_back("EMA($close, 10)")
    (0, None)

    Raises
    ------
    ExpressionError
        When the expression cannot be parsed or a Ref's offset is not an integer.
    """
    reach = _back(parse(expr))
    return None if reach is None else max(0, reach)


def _back(node: Node) -> int | None:
    # Days before today that node reads at most (negative: only the future); None: unbounded.
    if isinstance(node, (Field, Const)):
        return 0
    if node.name == "Ref":
        offset = _const(node.args[1])
        if not isinstance(offset, int):
            raise ExpressionError(f"Ref's offset {offset!r} must be an integer in {node}")
        inner = _back(node.args[0])
        return None if offset == 0 or inner is None else inner + offset
    if node.name in _ROLLING or node.name == "Quantile" or node.name in _PAIR:
        operands = node.args[:2] if node.name in _PAIR else node.args[:1]
        reaches = [_back(a) for a in operands]
        window = _const(node.args[len(operands)])
        if node.name == "EMA" or window < 1 or any(r is None for r in reaches):
            return None
        if node.name in ("Slope", "Rsquare", "Resi") and _may_be_infinite(node.args[0]):
            return None
        return max(r for r in reaches if r is not None) + int(window) - 1
    reaches = [_back(a) for a in node.args]
    return None if any(r is None for r in reaches) else max(r for r in reaches if r is not None)


def _may_be_infinite(node: Node) -> bool:
    """Whether ``node`` can be ±inf on stored (finite) data: a division, log or power on the way.

    Window operators turn ±inf into NaN before computing (pandas' rolling does), so only element-wise
    operators and ``Ref`` pass an infinity on.
    """
    if isinstance(node, Field):
        return False
    if isinstance(node, Const):
        return bool(np.isinf(node.value))
    if node.name in ("Div", "Log", "Power"):
        return True
    if node.name in _ELEMENTWISE or node.name == "Ref":
        return any(_may_be_infinite(a) for a in node.args)
    return False


def fields_of(expr: str | Node) -> set[str]:
    """The field names (without ``$``) that ``expr`` reads."""
    node = parse(expr)
    if isinstance(node, Field):
        return {node.name}
    if isinstance(node, Const):
        return set()
    return set().union(*(fields_of(a) for a in node.args))


def _const(node: Node) -> int | float:
    assert isinstance(node, Const)
    return node.value


Value = Any  # an ndarray (instruments, days) or a Python number


class Evaluator:
    """Evaluate many expressions over the same panels, computing each distinct sub-expression once.

    Parameters
    ----------
    panels : mapping of str to ndarray or DataFrame
        One (days, instruments) panel per field name (lower-case, without ``$``); rows are
        consecutive trading days, NaN outside an instrument's stored data.
    ranges : mapping of str to (ndarray, ndarray), optional
        Per field, each instrument's stored range as ``(first, last)`` int arrays of panel rows,
        inclusive (row 0 is the panels' first day; bounds beyond the panels are clipped; ``first >
        last`` is an empty range), e.g. from :meth:`~qroll.data.source.Source.stored_ranges`. Qlib's
        series of a field is its stored range, stored NaN days included (``reference/alpha158.md``
        §3.1). A field without an entry falls back to its first..last non-NaN row, which drops
        stored NaN days at either end of the data.

    Notes
    -----
    Internally every panel is held transposed, (instruments, days), so that each instrument's
    series is contiguous for the window kernels. Intermediate results are released as soon as no
    pending expression needs them, so Alpha158's
    hundreds of shared sub-expressions never sit in memory together.
    """

    def __init__(
        self,
        panels: Mapping[str, np.ndarray | pd.DataFrame],
        ranges: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        self.panels = {k: np.ascontiguousarray(np.asarray(v).T) for k, v in panels.items()}
        shapes = {v.shape for v in self.panels.values()}
        if len(shapes) > 1:
            raise ExpressionError(f"panels have different shapes {sorted(shapes)}; align them first")
        self.shape: tuple[int, ...] = shapes.pop() if shapes else (0, 0)
        self._cache: dict[str, Value] = {}
        self._uses: Counter[str] = Counter()
        self._bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._ranges: dict[tuple[str, ...], np.ndarray | None] = {}
        self._same: dict[tuple[tuple[str, ...], tuple[str, ...]], bool] = {}
        width, days = self.shape
        for name, (first, last) in (ranges or {}).items():
            first = np.asarray(first, dtype=np.int64).reshape(-1)
            last = np.asarray(last, dtype=np.int64).reshape(-1)
            if first.shape != (width,) or last.shape != (width,):
                raise ExpressionError(
                    f"the stored range of ${name} has {first.size}/{last.size} entries for {width} "
                    "instruments; give one (first, last) per panel column"
                )
            first, last = np.maximum(first, 0), np.minimum(last, days - 1)
            empty = first > last  # normalised so that a min over fields ignores it
            self._bounds[name] = (np.where(empty, days, first), np.where(empty, -1, last))

    def evaluate_many(self, exprs: Sequence[str | Node]) -> Iterator[np.ndarray]:
        """Yield each expression's (days, instruments) array in order (float32, float64 or bool).

        The arrays are transposed views of (instruments, days) buffers.
        """
        nodes = [parse(e) for e in exprs]
        seen: set[str] = set()
        for node in nodes:
            self._count(node, seen)
            self._uses[str(node)] += 1
        with np.errstate(all="ignore"):
            for node in nodes:
                yield self._operand(node, self._get(node)).T

    def _count(self, node: Node, seen: set[str]) -> None:
        key = str(node)
        if key in seen or not isinstance(node, Op):
            return
        seen.add(key)
        if node.name in ("Slope", "Rsquare", "Resi"):
            self._uses[_regression_key(node)] += 1
        for arg in _deps(node):
            self._uses[str(arg)] += 1
            self._count(arg, seen)

    def _get(self, node: Node) -> Value:
        key = str(node)
        if key in self._cache:
            value = self._cache[key]
        else:
            value = self._compute(node)
            self._cache[key] = value
        self._uses[key] -= 1
        if self._uses[key] <= 0:
            del self._cache[key]
        return value

    def _as_panel(self, value: Value) -> np.ndarray:
        if isinstance(value, np.ndarray):
            return value
        return np.full(self.shape, value)

    def _operand(self, node: Node, value: Value) -> np.ndarray:
        """``value`` of ``node`` as a panel that is NaN outside the node's series.

        Qlib's per-instrument series has no rows before its first or after its last stored day, but
        a panel does, and there a comparison gives False, a count 0, and ``Ref(x, -1)`` tomorrow's
        value. Window operators, Ref and the final columns must not see those rows.
        """
        panel = self._as_panel(value)
        if isinstance(node, Field):
            return panel  # NaN outside its stored days by construction
        inside = self._inside(node)
        if inside is None:
            return panel
        dtype = panel.dtype if panel.dtype.kind == "f" else np.float64
        return np.where(inside, panel, np.nan).astype(dtype, copy=False)

    def _aligned(self, arg: Node, parent: Op) -> Value:
        """An element-wise operand, NaN on the days of ``parent``'s series outside its own.

        Qlib aligns operands stored over different ranges on the union of their indexes, so a window
        or Ref over a shorter field is NaN where only the other fields are stored (``alpha158.md``
        §3.4), while the raw panel would carry values on past its last day. Operands over the same
        fields need no mask (the result is masked where it is used); nor do bool operands, which
        would stop being bool (kept as they are: Qlib's own result there is an object series).
        """
        value = self._get(arg)
        if not isinstance(arg, Op):
            return value
        names, outer = tuple(sorted(fields_of(arg))), tuple(sorted(fields_of(parent)))
        if names == outer or (isinstance(value, np.ndarray) and value.dtype == bool):
            return value
        key = (names, outer)
        if key not in self._same:
            mine, theirs = self._inside(arg), self._inside(parent)
            self._same[key] = (mine is None and theirs is None) or (
                mine is not None and theirs is not None and bool(np.array_equal(mine, theirs))
            )
        return value if self._same[key] else self._operand(arg, value)

    def _inside(self, node: Node) -> np.ndarray | None:
        """Mask of the days inside the node's series (None: every day): the union of its fields' ranges.

        Qlib aligns operands stored over different ranges on the calendar (pandas alignment), so
        the series of ``$vwap/$close`` covers the days of either field (``alpha158.md`` §3.4).
        """
        names = tuple(sorted(fields_of(node)))
        if names not in self._ranges:
            if not names:
                self._ranges[names] = None
            else:
                t = np.arange(self.shape[1])[None, :]
                inside = np.zeros(self.shape, dtype=bool)
                for f in names:
                    first, last = self._field_bounds(f)
                    inside |= (t >= first[:, None]) & (t <= last[:, None])
                self._ranges[names] = None if inside.all() else inside
        return self._ranges[names]

    def _start(self, node: Node) -> np.ndarray:
        """Per instrument, the first day of the node's series: the earliest first stored day of its fields."""
        width = self.shape[0]
        firsts = [self._field_bounds(f)[0] for f in sorted(fields_of(node))]
        return np.minimum.reduce(firsts) if firsts else np.zeros(width, dtype=np.int64)

    def _field_bounds(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """First and last day of a field's stored range; without a given range, of its non-NaN values."""
        if name not in self._bounds:
            panel = self._field(name)
            days = panel.shape[1]
            first = ops.first_valid_day(panel)
            last = days - 1 - ops.first_valid_day(panel[:, ::-1])
            empty = first >= days
            self._bounds[name] = (first, np.where(empty, -1, last))
        return self._bounds[name]

    def _field(self, name: str) -> np.ndarray:
        try:
            return self.panels[name]
        except KeyError:
            raise ExpressionError(
                f"field ${name} is not among the loaded panels {sorted(self.panels)}; load it first"
            ) from None

    def _compute(self, node: Node) -> Value:
        if isinstance(node, Field):
            return self._field(node.name)
        if isinstance(node, Const):
            return node.value
        name = node.name
        if name in _ELEMENTWISE:
            return ops.elementwise(name, [self._aligned(a, node) for a in node.args])
        if name == "Ref":
            n = int(_const(node.args[1]))
            x = self._operand(node.args[0], self._get(node.args[0]))
            # Ref(x, 0) is the first value of the series, which may be a stored NaN.
            return ops.ref(x, n, self._start(node.args[0]) if n == 0 else None)
        if name in _PAIR:
            n = int(_const(node.args[2]))
            x = self._operand(node.args[0], self._get(node.args[0]))
            y = self._operand(node.args[1], self._get(node.args[1]))
            out = ops.rolling_corr(x, y, n, "corr" if name == "Corr" else "cov")
            if name == "Corr":
                mask = _std_is_zero(self._get(_std_of(node, 0))) | _std_is_zero(self._get(_std_of(node, 1)))
                out[mask] = np.nan
            return out
        x = self._operand(node.args[0], self._get(node.args[0]))
        param = _const(node.args[1])
        if name == "Quantile":
            return ops.pandas_rolling(x, int(param), "quantile", float(_const(node.args[2])))
        return self._rolling(name, node, x, param)

    def _rolling(self, name: str, node: Op, x: np.ndarray, param: int | float) -> np.ndarray:
        if name == "EMA":
            frame = pd.DataFrame(ops.as_float64(x).T)
            if param == 0:
                raise ExpressionError("EMA with N = 0 (expanding) is not supported; give a span N >= 1")
            ewm = frame.ewm(alpha=param, min_periods=1) if param < 1 else frame.ewm(span=param, min_periods=1)
            return np.ascontiguousarray(ewm.mean().to_numpy().T)
        n = int(param)
        simple = {"Mean": "mean", "Sum": "sum", "Std": "std", "Var": "var", "Skew": "skew", "Kurt": "kurt",
                  "Max": "max", "Min": "min", "Med": "median", "Count": "count", "Rank": "rank"}
        if name in simple:
            return ops.pandas_rolling(x, n, simple[name])
        if name in ("Slope", "Rsquare", "Resi"):
            return self._regression(name, node, x, n)
        if n == 0:
            raise ExpressionError(f"{name} with N = 0 (expanding) is not supported; give a window N >= 1")
        start = self._start(node.args[0])
        if name in ("IdxMax", "IdxMin"):
            return ops.window_apply(x, n, start, lambda w: ops.nan_argext(w, name == "IdxMax"))
        funcs = {"WMA": ops.weighted_mean, "Mad": ops.mean_abs_dev, "Delta": ops.delta}
        return ops.window_apply(x, n, start, funcs[name])

    def _regression(self, name: str, node: Op, x: np.ndarray, n: int) -> np.ndarray:
        if n < 1:
            raise ExpressionError(f"{name} needs a window N >= 1, got {n}")
        # Slope, Rsquare and Resi of one input share one pass; it is kept until all have used it.
        key = _regression_key(node)
        if key not in self._cache:
            self._cache[key] = ops.regression(x, n)
        slope, rsq, resi = self._cache[key]
        self._uses[key] -= 1
        if self._uses[key] <= 0:
            del self._cache[key]
        if name == "Slope":
            return slope
        if name == "Resi":
            return resi
        out = rsq.copy()
        out[_std_is_zero(self._get(_std_of(node, 0)))] = np.nan
        return out


def _regression_key(node: Op) -> str:
    return f"regression({node.args[0]},{node.args[1]})"


def _deps(node: Op) -> list[Node]:
    """The nodes ``node`` reads: its arguments, plus the rolling stds of Corr's and Rsquare's masks."""
    deps = list(node.args)
    if node.name == "Corr":
        deps += [_std_of(node, 0), _std_of(node, 1)]
    elif node.name == "Rsquare":
        deps.append(_std_of(node, 0))
    return deps


def _std_of(node: Op, i: int) -> Op:
    # Shared with any Std(x, N) the expressions compute anyway (Alpha158's STD family).
    return Op("Std", (node.args[i], node.args[-1]))


def _std_is_zero(std: np.ndarray) -> np.ndarray:
    # Qlib's mask: np.isclose(rolling std, 0, atol=2e-5); a NaN std does not mask.
    return np.isclose(std, 0, atol=2e-5)


def evaluate(
    expr: str | Node,
    panels: Mapping[str, np.ndarray | pd.DataFrame],
    ranges: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray | pd.DataFrame:
    """Evaluate one expression over wide panels (days × instruments), with Qlib's numbers.

    Parameters
    ----------
    expr : str or Node
        A Qlib expression, e.g. ``"Std($close, 20)/$close"``.
    panels : mapping of str to ndarray or DataFrame
        One (days, instruments) panel per field it reads (lower-case name, no ``$``).
    ranges : mapping of str to (ndarray, ndarray), optional
        Each field's stored range per instrument, in panel rows (see :class:`Evaluator`); by
        default the first..last non-NaN row of each field.

    Returns
    -------
    ndarray or DataFrame
        The raw result (float32 for element-wise expressions of float32 data, float64 after a window
        operator, bool for a comparison); a DataFrame with the panels' index and columns when the
        panels are DataFrames.

    Raises
    ------
    ExpressionError
        When the expression cannot be parsed or reads a field that is not in ``panels``.
    """
    value = next(Evaluator(panels, ranges).evaluate_many([expr]))
    frames = [p for p in panels.values() if isinstance(p, pd.DataFrame)]
    if frames:
        return pd.DataFrame(value, index=frames[0].index, columns=frames[0].columns)
    return value
