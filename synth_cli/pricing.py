"""Token prices and the arithmetic behind `synth-ai calc`.

* :func:`load_table` reads the bundled price table (`synth_cli/data/pricing.toml`)
  or a user's file (TOML or JSON of the same shape) into a :class:`PriceTable`;
* :meth:`PriceTable.lookup` resolves a model id (case, provider prefixes, dated
  snapshots) or fails with the closest known names;
* :func:`estimate` prices a call or a workload exactly (``Decimal``);
* :func:`parse_count` reads token counts such as ``1_000_000``, ``1M``, ``2.5k``;
* :func:`safe_eval` evaluates plain arithmetic without ``eval`` — numbers, the
  operators ``+ - * / // % **``, unary signs and parentheses, nothing else.

Nothing here prints; every failure is a :class:`~synth_cli.errors.UsageError`.
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable

from synth_cli.errors import UsageError

BUNDLED_TABLE = Path(__file__).resolve().parent / "data" / "pricing.toml"
PER_TOKENS = 1_000_000  # prices are USD per this many tokens

# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class ModelPrice:
    """One row of the price table: USD per 1M tokens."""

    name: str
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    provider: str | None = None
    as_of: str | None = None
    source: str | None = None
    note: str | None = None
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "provider": self.provider,
            "input_usd_per_million": float(self.input),
            "cached_input_usd_per_million": None if self.cached_input is None else float(self.cached_input),
            "output_usd_per_million": float(self.output),
            "as_of": self.as_of,
            "source": self.source,
            "note": self.note,
            "aliases": list(self.aliases),
        }


@dataclass
class PriceTable:
    rows: list[ModelPrice]
    path: Path
    bundled: bool
    _index: dict[str, ModelPrice] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for row in self.rows:
            for key in (row.name, *row.aliases):
                self._index.setdefault(key.lower(), row)

    @property
    def label(self) -> str:
        return "the bundled price table" if self.bundled else f"price table {self.path}"

    def names(self) -> list[str]:
        return [row.name for row in self.rows]

    def find(self, model: str) -> ModelPrice | None:
        """The row for `model`, or None. Tries, in order: the id as given, without a
        provider prefix (`openai/…`), without a date/`-latest` suffix."""
        for candidate in _candidates(model):
            row = self._index.get(candidate.lower())
            if row is not None:
                return row
        return None

    def lookup(self, model: str) -> ModelPrice:
        row = self.find(model)
        if row is not None:
            return row
        matches = self.close_matches(model)
        hint = ("did you mean " + ", ".join(matches) + "? " if matches else "") + \
            "`synth-ai calc --list` shows every priced model"
        raise UsageError(f"no price for model {model!r} in {self.label}", hint=hint)

    def close_matches(self, model: str, n: int = 3) -> list[str]:
        keys = {key: row.name for row in self.rows for key in (row.name.lower(), *(a.lower() for a in row.aliases))}
        found: list[str] = []
        for candidate in _candidates(model):
            for key in difflib.get_close_matches(candidate.lower(), list(keys), n=n, cutoff=0.6):
                if keys[key] not in found:
                    found.append(keys[key])
        return found[:n]


_PREFIX = re.compile(r"^(openai|anthropic|google|models|deepseek|groq|together|together_ai|openrouter)/", re.I)
_DATED = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest)$", re.I)


def _candidates(model: str) -> list[str]:
    name = model.strip()
    out = [name]
    bare = _PREFIX.sub("", name)
    if bare != name:
        out.append(bare)
    for item in list(out):
        undated = _DATED.sub("", item)
        if undated != item:
            out.append(undated)
    return out


def table_path(flag_value: str | None = None) -> tuple[Path, bool]:
    """The table to use: `--pricing FILE`, then SYNTH_PRICING_FILE, then the bundled one."""
    from synth_cli import config

    setting = config.resolve(("SYNTH_PRICING_FILE",), flag_value, "--pricing")
    if setting is None:
        return BUNDLED_TABLE, True
    path = Path(setting.value).expanduser()
    if not path.is_file():
        raise UsageError(f"{setting.source}: price table {setting.value} does not exist",
                         hint="point it at a TOML or JSON file shaped like `synth-ai calc --list --json`")
    return path, False


def load_table(flag_value: str | None = None) -> PriceTable:
    path, bundled = table_path(flag_value)
    return PriceTable(rows=read_rows(path), path=path, bundled=bundled)


def read_rows(path: Path) -> list[ModelPrice]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read price table {path}: {exc}") from exc
    data = _parse_table_text(text, path)
    if isinstance(data, list):
        raw_rows = data
    elif isinstance(data, dict):
        raw_rows = data.get("model", data.get("models"))
        if raw_rows is None:
            raise UsageError(f"price table {path} has no `model` rows",
                             hint="TOML: [[model]] tables; JSON: {\"model\": [{\"name\": …, \"input\": …, \"output\": …}]}")
    else:
        raw_rows = None
    if not isinstance(raw_rows, list):
        raise UsageError(f"price table {path}: expected a list of model rows")
    rows = [_row(item, path, i) for i, item in enumerate(raw_rows, 1)]
    if not rows:
        raise UsageError(f"price table {path} has no model rows")
    return rows


def _parse_table_text(text: str, path: Path) -> Any:
    """JSON for `.json` files (or JSON-looking text that is not TOML), TOML otherwise."""
    import json

    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise UsageError(f"price table {path} is not valid JSON: {exc}") from exc
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        if text.lstrip().startswith(("{", "[")):
            try:
                return json.loads(text)
            except ValueError:
                pass
        raise UsageError(f"price table {path} is not valid TOML: {exc}") from exc


# The `--list --json` output uses *_per_million keys; accept those too so it can be edited and fed back.
_FIELD_ALIASES = {"model": "name", "input_per_million": "input", "output_per_million": "output",
                  "cached_input_per_million": "cached_input", "input_usd_per_million": "input",
                  "output_usd_per_million": "output", "cached_input_usd_per_million": "cached_input"}


def _row(item: Any, path: Path, index: int) -> ModelPrice:
    where = f"price table {path}, row {index}"
    if not isinstance(item, dict):
        raise UsageError(f"{where}: expected a table/object, got {type(item).__name__}")
    item = {_FIELD_ALIASES.get(k, k): v for k, v in item.items()}
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{where}: `name` (the model id) is missing")
    where = f"price table {path}, model {name!r}"

    def price(key: str, required: bool) -> Decimal | None:
        value = item.get(key)
        if value is None:
            if required:
                raise UsageError(f"{where}: `{key}` (USD per 1M tokens) is missing")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise UsageError(f"{where}: `{key}` must be a number, got {value!r}")
        try:
            dec = Decimal(str(value))
        except InvalidOperation:
            raise UsageError(f"{where}: `{key}` must be a number, got {value!r}") from None
        if not dec.is_finite() or dec < 0:
            raise UsageError(f"{where}: `{key}` must be a non-negative number, got {value!r}")
        return dec

    aliases = item.get("aliases") or ()
    if isinstance(aliases, str):
        aliases = (aliases,)
    if not all(isinstance(a, str) for a in aliases):
        raise UsageError(f"{where}: `aliases` must be a list of model ids")

    def text(key: str) -> str | None:
        value = item.get(key)
        return None if value is None else str(value)

    return ModelPrice(name=name.strip(), input=price("input", True), output=price("output", True),  # type: ignore[arg-type]
                      cached_input=price("cached_input", False), provider=text("provider"), as_of=text("as_of"),
                      source=text("source"), note=text("note"), aliases=tuple(a.strip() for a in aliases))


# --------------------------------------------------------------------------- counts

_COUNT = re.compile(r"^\s*(?P<num>[0-9][0-9_,]*(\.[0-9_]+)?|\.[0-9_]+)(?:[eE](?P<exp>[+]?[0-9]+))?\s*(?P<suffix>[kKmMbBgG]?)\s*$")
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}


def parse_count(text: str, what: str = "token count") -> int:
    """`1000`, `1_000_000`, `1,000`, `1M`, `500k`, `2.5k`, `1e6` → int; anything else is a UsageError."""
    value = count_or_none(text)
    if value is None:
        raise UsageError(f"{what} {text!r} is not a whole number of tokens",
                         hint="use digits with optional _ or , separators and a k/M/B suffix, e.g. 1_000_000, 1M, 2.5k")
    return value


def count_or_none(text: str) -> int | None:
    match = _COUNT.match(str(text))
    if not match:
        return None
    digits = match.group("num").replace("_", "").replace(",", "")
    try:
        value = Decimal(digits)
    except InvalidOperation:
        return None
    exp = int(match.group("exp") or 0)
    if exp > 15:
        return None
    value = value * (Decimal(10) ** exp) * _SUFFIX[match.group("suffix").lower()]
    if value != value.to_integral_value():
        return None
    return int(value)


# --------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Estimate:
    row: ModelPrice
    requested_model: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    uncached_cost: Decimal
    cached_cost: Decimal
    output_cost: Decimal
    cached_rate: Decimal  # the rate actually used for cached tokens

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cached_input_tokens

    @property
    def total(self) -> Decimal:
        return self.uncached_cost + self.cached_cost + self.output_cost

    @property
    def cached_price_missing(self) -> bool:
        return self.cached_input_tokens > 0 and self.row.cached_input is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.requested_model,
            "priced_as": self.row.name,
            "provider": self.row.provider,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "input_usd_per_million": float(self.row.input),
            "cached_input_usd_per_million": float(self.cached_rate),
            "output_usd_per_million": float(self.row.output),
            "input_cost_usd": float(self.uncached_cost),
            "cached_input_cost_usd": float(self.cached_cost),
            "output_cost_usd": float(self.output_cost),
            "cost_usd": float(self.total),
            "as_of": self.row.as_of,
            "source": self.row.source,
            "note": self.row.note,
        }


def estimate(row: ModelPrice, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0,
             requested_model: str | None = None) -> Estimate:
    """Cost of `input_tokens` + `output_tokens`, where `cached_input_tokens` are the part of the
    input read from the prompt cache (as in OpenAI's `usage.prompt_tokens_details.cached_tokens`)."""
    for label, value in (("input", input_tokens), ("output", output_tokens), ("cached input", cached_input_tokens)):
        if value < 0:
            raise UsageError(f"{label} tokens cannot be negative ({value})")
    if cached_input_tokens > input_tokens:
        raise UsageError(f"--cached-input-tokens ({cached_input_tokens:,}) is more than the input tokens ({input_tokens:,})",
                         hint="cached tokens are the part of INPUT_TOKENS read from the prompt cache")
    cached_rate = row.cached_input if row.cached_input is not None else row.input
    per = Decimal(PER_TOKENS)
    return Estimate(
        row=row, requested_model=requested_model or row.name, input_tokens=input_tokens,
        cached_input_tokens=cached_input_tokens, output_tokens=output_tokens,
        uncached_cost=Decimal(input_tokens - cached_input_tokens) * row.input / per,
        cached_cost=Decimal(cached_input_tokens) * cached_rate / per,
        output_cost=Decimal(output_tokens) * row.output / per,
        cached_rate=cached_rate,
    )


# --------------------------------------------------------------------------- safe arithmetic

MAX_EXPRESSION_CHARS = 2000
MAX_INT_BITS = 4096  # ~1233 decimal digits: 2**4096 is fine, 9**9**9 is not
MAX_EXPONENT = 10_000

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_OP_SYMBOL = {ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
              ast.MatMult: "@", ast.Invert: "~", ast.Not: "not"}


def safe_eval(expression: str) -> int | float:
    """Evaluate arithmetic: numbers, + - * / // % **, unary +/-, parentheses. Nothing else."""
    expr = expression.strip()
    if not expr:
        raise UsageError("empty expression")
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise UsageError(f"expression too long ({len(expr):,} characters, at most {MAX_EXPRESSION_CHARS:,})")
    try:
        tree = ast.parse(_expand_suffixes(expr), mode="eval")
    except SyntaxError:
        raise UsageError(f"cannot evaluate {expression!r}: invalid syntax",
                         hint="calc takes MODEL INPUT_TOKENS OUTPUT_TOKENS, or arithmetic such as '2*(3+4)'") from None
    except (ValueError, MemoryError, RecursionError):
        raise UsageError(f"cannot evaluate {expression!r}: not an arithmetic expression") from None
    try:
        return _eval(tree.body)
    except ZeroDivisionError:
        raise UsageError(f"cannot evaluate {expression!r}: division by zero") from None
    except OverflowError:
        raise UsageError(f"cannot evaluate {expression!r}: the result is too large") from None
    except RecursionError:
        raise UsageError(f"cannot evaluate {expression!r}: nested too deeply") from None


_SUFFIXED = re.compile(r"(?<![\w.])(\d[\d_]*(?:\.\d[\d_]*)?)([kKmMbB])\b")


def _expand_suffixes(expr: str) -> str:
    """`2.5k` → `(2.5*1000)`, so token counts can be used in arithmetic as they are on the command line."""
    return _SUFFIXED.sub(lambda m: f"({m.group(1)}*{_SUFFIX[m.group(2).lower()]})", expr)


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"only numbers are allowed in expressions, not {value!r}")
        return _check(value)
    if isinstance(node, ast.BinOp):
        op = type(node.op)
        if op not in _BINOPS:
            raise UsageError(f"operator {_OP_SYMBOL.get(op, op.__name__)!r} is not allowed; use + - * / // % **")
        left, right = _eval(node.left), _eval(node.right)
        if op is ast.Pow:
            return _check(_power(left, right))
        return _check(_BINOPS[op](left, right))
    if isinstance(node, ast.UnaryOp):
        op = type(node.op)
        if op not in _UNARY:
            raise UsageError(f"operator {_OP_SYMBOL.get(op, op.__name__)!r} is not allowed; use + - * / // % **")
        return _UNARY[op](_eval(node.operand))
    if isinstance(node, ast.Name):
        raise UsageError(f"names are not allowed in expressions ({node.id!r}); use numbers and + - * / // % **")
    if isinstance(node, ast.Attribute):
        raise UsageError("attribute access is not allowed in expressions")
    if isinstance(node, ast.Call):
        raise UsageError("function calls are not allowed in expressions")
    kind = type(node).__name__.lower()
    raise UsageError(f"{kind} is not allowed in expressions; use numbers and + - * / // % **")


def _power(base: int | float, exponent: int | float) -> int | float:
    if abs(exponent) > MAX_EXPONENT:
        shown = f"{exponent:,}" if isinstance(exponent, int) else f"{exponent:g}"
        raise UsageError(f"exponent {shown} is too large (at most {MAX_EXPONENT:,})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        # estimate before computing: |base|**exponent has about bit_length*exponent bits
        if (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
            raise UsageError(f"the result of {base}**{exponent} is too large (more than {MAX_INT_BITS} bits)")
    result = base ** exponent
    if isinstance(result, complex):
        raise UsageError("the result is a complex number (fractional power of a negative number)")
    return result


def _check(value: int | float) -> int | float:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise UsageError(f"the result is too large (more than {MAX_INT_BITS} bits)")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError("the result is too large (not a finite number)")
    return value


def format_number(value: int | float) -> str:
    """Integers exactly; floats with up to 15 significant digits (0.1+0.2 → 0.3)."""
    if isinstance(value, int):
        return str(value)
    text = format(value, ".15g")
    if "e" not in text and "." not in text and "inf" not in text and "nan" not in text:
        text += ".0"
    return text


def names_a_model(word: str) -> bool:
    """A word that can only be a model id: it has a letter and is not a number (`1e6`, `2.5k`)."""
    return any(c.isalpha() for c in word) and count_or_none(word) is None


def looks_like_model_call(args: Iterable[str]) -> bool:
    """MODEL N N: three words, the first naming a model, the last two token counts."""
    items = list(args)
    return (len(items) == 3 and names_a_model(items[0])
            and count_or_none(items[1]) is not None and count_or_none(items[2]) is not None)
