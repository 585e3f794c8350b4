"""CSV: the one encoder of export rows, and the decoder import uses.

Cells: ``tags`` are ``;``-joined, ``headers``, ``params`` and ``findings`` are JSON text,
booleans ``true``/``false``, null is empty. Cells starting with ``=``, ``+``, ``-``, ``@``,
tab or CR (formula triggers in spreadsheets; a negative longitude too) are prefixed with
``'``; so are cells that already start with ``'``, which makes ``record_from_csv_row``
(strip one leading ``'``) lossless. Every cell, numbers included: the rule stays simple to
audit (no cell of the file starts with a trigger) and to invert (strip one ``'``).
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from tracking.export.record import (
    BOOL_FIELDS,
    EXPORT_FIELDS,
    FLOAT_FIELDS,
    INT_FIELDS,
    JSON_FIELDS,
    field_kinds,
)

# What an empty CSV cell means per column (text columns: the empty string).
_EMPTY: dict[str, Any] = {
    **dict.fromkeys(
        BOOL_FIELDS | INT_FIELDS | FLOAT_FIELDS | {"user", "ip_address", "remote_addr"}
    ),
    "headers": {},
    "params": {},
    "findings": [],
}


class Payloads(Protocol):
    """Cached CSV fields of headers/params (``tracking.export.values.PayloadCache``)."""

    def field(self, value: Any) -> str: ...


CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(cell: str) -> str:
    """Defuse spreadsheet formula injection in one CSV text cell."""
    if cell and cell.startswith(CSV_TRIGGERS):
        return "'" + cell
    return cell


def record_from_csv_row(row: dict[str, str]) -> dict[str, Any]:
    """Invert the CSV encoding: a CSV row (``csv.DictReader``) back to a JSON-form record.

    Missing columns are left out (minimal records); bad values raise ``ValueError`` naming
    the column.
    """
    record: dict[str, Any] = {}
    for name, raw in row.items():
        if name is None or name not in EXPORT_FIELDS or raw is None:
            continue
        text = raw[1:] if raw.startswith("'") else raw
        try:
            if name == "tags":
                value: Any = [t for t in text.split(";") if t]
            elif text == "":
                value = _EMPTY.get(name, "")
            elif name in BOOL_FIELDS:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(f"not a boolean: {text!r}")
                value = text.lower() in ("true", "1")
            elif name in INT_FIELDS:
                value = int(text)
            elif name in FLOAT_FIELDS:
                value = float(text)
            elif name in JSON_FIELDS:
                value = json.loads(text)
            elif name == "user":
                value = int(text) if text.isdigit() else text
            else:
                value = text
        except ValueError as exc:
            raise ValueError(f"column {name!r}: {exc}") from exc
        record[name] = value
    return record


# CSV cell encoders per column, in EXPORT_FIELDS order (see the module docstring for the rules).
_TEXT, _BOOL, _NUMBER, _FLOAT, _TAGS, _PAYLOAD, _FINDINGS, _ANY, _REPEATED = range(9)
# Text columns with few distinct values that often need quoting (user agents hold
# "(KHTML, like Gecko)", proxy chains "a, b"): their fields are memoised.
_REPEATED_COLUMNS = frozenset({"user_agent", "forwarded_for"})
_TRIGGERS = "".join(CSV_TRIGGERS)
assert all(len(t) == 1 for t in CSV_TRIGGERS)  # one-character triggers: a set test suffices


def _cell_kinds() -> tuple[int, ...]:
    kinds = field_kinds()
    by_type = {
        "BooleanField": _BOOL,
        "FloatField": _FLOAT,
        "CharField": _TEXT,
        "TextField": _TEXT,
        "GenericIPAddressField": _TEXT,
        "IntegerField": _NUMBER,
        "PositiveIntegerField": _NUMBER,
        "PositiveSmallIntegerField": _NUMBER,
        "SmallIntegerField": _NUMBER,
        "BigIntegerField": _NUMBER,
        "PositiveBigIntegerField": _NUMBER,
    }
    out = []
    for name in EXPORT_FIELDS:
        if name in ("id", "timestamp", "type_display"):
            out.append(_TEXT)
        elif name == "tags":
            out.append(_TAGS)
        elif name in ("headers", "params"):
            out.append(_PAYLOAD)
        elif name == "findings":
            out.append(_FINDINGS)
        elif name == "user":  # its id; a non-integer id takes the generic rules there
            out.append(_NUMBER)
        elif name in _REPEATED_COLUMNS and kinds.get(name) in ("CharField", "TextField"):
            out.append(_REPEATED)
        else:  # model columns by type; anything unusual takes the generic rules
            out.append(by_type.get(kinds.get(name, ""), _ANY))
    return tuple(out)


_GROUPS: dict[int, tuple[int, ...]] | None = None


def _groups() -> dict[int, tuple[int, ...]]:
    global _GROUPS
    if _GROUPS is None:
        kinds = _cell_kinds()
        _GROUPS = {k: tuple(i for i, kind in enumerate(kinds) if kind == k) for k in range(9)}
    return _GROUPS


def _cells(values: list[Any], payloads: Payloads | None = None) -> list[str]:
    """The CSV fields of a value list in ``EXPORT_FIELDS`` order, rewritten in place:
    the cells' text (module docstring), quoted as ``csv.writer`` (excel dialect) quotes it, ready to be
    joined with ``","``. Columns are handled by known type, so a cell costs a check, not a
    dispatch; quoting costs one scan of the row (``_quoted_where_needed``)."""
    groups = _GROUPS or _groups()
    triggers = _TRIGGERS
    for i in groups[_TEXT]:
        v = values[i]
        if v is None:
            values[i] = ""
            continue
        if type(v) is not str:
            v = values[i] = _generic(v)
        if v and v[0] in triggers:
            values[i] = "'" + v
    for i in groups[_NUMBER]:
        v = values[i]
        if v is None:
            values[i] = ""
        elif type(v) is not int:
            values[i] = neutralise(_generic(v))
        else:
            values[i] = "'" + str(v) if v < 0 else str(v)
    for i in groups[_FLOAT]:
        v = values[i]
        if v is None:
            values[i] = ""
        elif type(v) is not float:
            values[i] = neutralise(_generic(v))
        else:
            text = repr(v)
            # negative, or -0.0 (written "-0.0")
            values[i] = "'" + text if text[0] == "-" else text
    for i in groups[_BOOL]:
        v = values[i]
        if v is None:
            values[i] = ""
        else:
            values[i] = ("true" if v else "false") if type(v) is bool else neutralise(_generic(v))
    for i in groups[_TAGS]:
        v = values[i]
        if v is None:
            values[i] = ""
        else:
            text = ";".join(v)
            values[i] = "'" + text if text and text[0] in triggers else text
    for i in groups[_PAYLOAD]:
        v = values[i]
        values[i] = payloads.field(v) if payloads else _csv_field(_json_cell(v))
    for i in groups[_FINDINGS]:
        v = values[i]
        if v is None:
            values[i] = ""
        else:
            values[i] = "[]" if not v else _csv_field(_json_cell(v))
    for i in groups[_ANY]:
        v = values[i]
        values[i] = "" if v is None else neutralise(_generic(v))
    for i in groups[_REPEATED]:
        v = values[i]
        if v is None:
            values[i] = ""
        else:
            values[i] = (
                _repeated_field(v) if type(v) is str else _csv_field(neutralise(_generic(v)))
            )
    _quoted_where_needed(values)
    return values


def _csv_field(text: str) -> str:
    """``text`` as csv.writer writes it: quoted, inner quotes doubled, where needed (the
    excel dialect quotes a field holding the delimiter, the quote or a line-end character)."""
    if "," in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


@functools.lru_cache(maxsize=4096)
def _repeated_field(text: str) -> str:
    return _csv_field(neutralise(text))


_PROBED: Any = None


def _quoted_where_needed(fields: list[str]) -> None:
    """Quote the plain fields (all but payloads, findings and _REPEATED, quoted already)
    that need it.

    One joined probe of a row's plain fields tells whether any needs quoting, which almost
    never happens; only then is each field looked at.
    """
    global _PROBED
    if _PROBED is None:
        groups = _GROUPS or _groups()
        quoted = set(groups[_PAYLOAD]) | set(groups[_FINDINGS]) | set(groups[_REPEATED])
        _PROBED = tuple(i for i in range(len(EXPORT_FIELDS)) if i not in quoted)
    probe = "\x00".join([fields[i] for i in _PROBED])
    if "," in probe or '"' in probe or "\n" in probe or "\r" in probe:
        for i in _PROBED:
            fields[i] = _csv_field(fields[i])


def _generic(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _json_cell(value: Any) -> str:
    return neutralise(json.dumps(value, ensure_ascii=False, sort_keys=True))


def _csv_chunks(
    rows: Iterable[list[Any]],
    payloads: Payloads | None = None,
    every: int = 500,
    *,
    header: bool = True,
) -> Iterator[str]:
    """CSV text of value lists, ``every`` rows a chunk. Lines are joined here rather than
    by csv.writer, which copies each character through its quoting checks (the larger part
    of the CSV cost); the text is the same (tests compare it with csv.writer's)."""
    if header:
        yield csv_header()
    batch: list[str] = []
    for values in rows:
        batch.append(",".join(_cells(values, payloads)))
        if len(batch) >= every:
            batch.append("")
            yield "\r\n".join(batch)
            batch.clear()
    if batch:
        batch.append("")
        yield "\r\n".join(batch)


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue()


def csv_header() -> str:
    """The header line of a CSV export."""
    return _csv_line(list(EXPORT_FIELDS))
