"""Which web requests are commerce events: a URL map, data like the rules.

A map is a small TOML file of request patterns, tried in order; the first that matches a
request gives it its event type, and its named group `product_id` (digits) or `product` (a
slug, made a stable number) gives the product:

    name = "my-shop"

    [[event]]
    type = "view"
    method = "GET"
    path = '^/product/(?P<product_id>\\d+)'

    [[event]]
    type = "cart"
    method = "POST"
    path = '^/cart/add$'
    query = '(?:^|&)id=(?P<product_id>\\d+)'

Patterns are RE2 (the engine pyarrow runs, vectorized over a batch's paths): no look-around or
back-references. `path` is matched against the request's path as logged (percent-encoded, no
query string), `query` against its query string; a pattern needs one of them. A request counts
only when it succeeded (status below 400) unless `status = "any"`; a static file never does.
Requests that match nothing stay `request` events. Presets for common platforms ship with
ecomwatch (`ecomwatch/decode/url_maps/*.toml`); `load_url_map` takes a preset's name or a path.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ecomwatch.decode.distinct_text import DistinctText, mask
from ecomwatch.schema import LABEL_TYPE, EventType

PRODUCT_GROUPS = ("product_id", "product")


class UrlMapError(ValueError):
    """A URL map is invalid; the message names the file, the pattern and the field."""


def _check_re2(pattern: str) -> str:
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"not a valid RE2 pattern: {exc}") from None
    return pattern


class EventPattern(BaseModel):
    """One `[[event]]` of a map: which requests become which commerce event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["view", "cart", "remove_from_cart", "purchase"]
    method: tuple[str, ...] = ()  # any method when empty
    path: str | None = None
    query: str | None = None
    status: Literal["ok", "any"] = "ok"

    @field_validator("method", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            for method in value:
                if not isinstance(method, str) or not method.isalpha() or not method.isupper():
                    raise ValueError(f"{method!r} is not an HTTP method like GET or POST")
        return value

    @field_validator("path", "query")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return None if value is None else _check_re2(value)

    @model_validator(mode="after")
    def _one_place_for_the_product(self) -> EventPattern:
        if self.path is None and self.query is None:
            raise ValueError("give a path or a query pattern (or both)")
        places = [
            (field, group)
            for field, text in (("path", self.path), ("query", self.query))
            for group in PRODUCT_GROUPS
            if text is not None and f"(?P<{group}>" in text
        ]
        if len(places) > 1:
            raise ValueError(
                "name the product once: one group (?P<product_id>…) or (?P<product>…) in "
                f"path or query, not {', '.join(f'{g} in {f}' for f, g in places)}"
            )
        return self

    @property
    def product_group(self) -> tuple[str, str] | None:
        """(field, group name) of the product's capture, if the pattern has one."""
        for field, text in (("path", self.path), ("query", self.query)):
            for group in PRODUCT_GROUPS:
                if text is not None and f"(?P<{group}>" in text:
                    return field, group
        return None


class UrlMapSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    event: tuple[EventPattern, ...] = Field(min_length=1)


@dataclass(frozen=True)
class UrlMap:
    """A validated map, applied to decoded web events (`apply`)."""

    spec: UrlMapSpec
    origin: str  # the preset's name or the file's path

    @property
    def name(self) -> str:
        return self.spec.name

    def apply(self, events: pa.Table) -> pa.Table:
        """The events with each matching request's type and product set: the patterns run
        over the distinct paths and queries (vectorized), each row takes its value's result."""
        candidates = _candidates(events)
        if not candidates.any():
            return events
        index = np.flatnonzero(candidates)
        taken = pa.array(index)
        path = DistinctText(events["path"].take(taken))
        query = DistinctText(events["query"].take(taken))
        method = DistinctText(events["method"].take(taken))
        status = events["status"].take(taken)
        left = np.ones(len(index), dtype=bool)
        codes = np.full(len(index), -1, dtype=np.int32)  # the pattern that mapped each row
        products = np.zeros(len(index), dtype=np.int64)
        has_product = np.zeros(len(index), dtype=bool)
        for number, pattern in enumerate(self.spec.event):
            hit = left & _matches(pattern, path, query, method, status)
            if not hit.any():
                continue
            codes[hit] = number
            where = pattern.product_group
            if where is not None:
                field, group = where
                ids, found = _product_ids(path if field == "path" else query, field, pattern, group)
                use = hit & found
                products[use] = ids[use]
                has_product[use] = True
            left &= ~hit
        mapped = ~left
        if not mapped.any():
            return events
        types = [pattern.type for pattern in self.spec.event]
        return _with_types(events, index[mapped], codes[mapped], types, products[mapped],
                           has_product[mapped])  # fmt: skip


def _candidates(events: pa.Table) -> np.ndarray:
    """Rows a map may turn into commerce events: requests that are not static files."""
    kind = pc.fill_null(pc.equal(events["request_kind"].cast(pa.string()), "static"), False)
    request = pc.equal(events["event_type"].cast(pa.string()), EventType.REQUEST.value)
    wanted = pc.and_(request, pc.invert(kind))
    return mask(wanted)


def _matches(
    pattern: EventPattern,
    path: DistinctText,
    query: DistinctText,
    method: DistinctText,
    status: pa.ChunkedArray,
) -> np.ndarray:
    hit = np.ones(len(path.indices), dtype=bool)
    if pattern.method:
        hit &= method.is_one_of(*pattern.method)
    if pattern.status == "ok":
        hit &= mask(pc.less(status, 400))
    if pattern.path is not None:
        hit &= path.matches(pattern.path)
    if pattern.query is not None:
        hit &= query.matches(pattern.query)
    return hit


def _product_ids(
    values: DistinctText, field: str, pattern: EventPattern, group: str
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, found) per row: the captured product id, or a slug's stable number (each
    distinct path or query read once)."""
    text = pattern.path if field == "path" else pattern.query
    assert text is not None
    captured = pc.struct_field(pc.extract_regex(values.values, text), group)
    found = mask(pc.is_valid(captured))
    if group == "product_id":
        found &= mask(pc.match_substring_regex(captured, r"^\d{1,18}$"))
        numbers = pc.if_else(pa.array(found), captured, "0").cast(pa.int64())
        ids = np.asarray(numbers.to_numpy(zero_copy_only=False), dtype=np.int64)
    else:
        slugs = pc.fill_null(captured, "").to_pylist()
        ids = np.array([slug_number(s) for s in slugs], dtype=np.int64)
    return values.per_row(ids), values.per_row(found)


def slug_number(slug: str) -> int:
    """A product slug's stable, positive 63-bit number (the same on every run and machine)."""
    digest = hashlib.blake2b(slug.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _with_types(
    events: pa.Table,
    rows: np.ndarray,
    codes: np.ndarray,
    types: Sequence[str],
    products: np.ndarray,
    has_product: np.ndarray,
) -> pa.Table:
    """The events with `rows` given the types `types[codes]`, and those products where they
    have one: the event types stay dictionary codes (no text per row)."""
    event_type = events["event_type"].combine_chunks()
    if not isinstance(event_type, pa.DictionaryArray):
        event_type = event_type.dictionary_encode()
    labels = event_type.dictionary.to_pylist()
    for code in np.unique(codes).tolist():  # the types some row took, each once
        if types[code] not in labels:
            labels.append(types[code])
    at = np.array([labels.index(name) if name in labels else -1 for name in types], np.int32)
    indices = np.array(event_type.indices.to_numpy(zero_copy_only=False), dtype=np.int32)
    indices[rows] = at[codes]
    product_id = events["product_id"]
    product = np.array(pc.fill_null(product_id, 0).to_numpy(zero_copy_only=False), np.int64)
    valid = mask(pc.is_valid(product_id))
    product[rows[has_product]] = products[has_product]
    valid[rows[has_product]] = True
    columns = {
        "event_type": pa.DictionaryArray.from_arrays(
            pa.array(indices), pa.array(labels, pa.string())
        ).cast(LABEL_TYPE),
        "product_id": pa.array(product, pa.int64(), mask=~valid),
    }
    for name, column in columns.items():
        at = events.schema.get_field_index(name)
        events = events.set_column(at, events.schema.field(at), column)  # the schema's field
    return events


def preset_names() -> list[str]:
    folder = resources.files("ecomwatch.decode").joinpath("url_maps")
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_url_map(name_or_path: str | Path) -> UrlMap:
    """A preset by name (`magento2`, `woocommerce`, `shopify`, `prestashop`) or a map file."""
    text_name = str(name_or_path)
    if text_name in preset_names():
        text = resources.files("ecomwatch.decode").joinpath(f"url_maps/{text_name}.toml")
        return _parse(text.read_text(), origin=text_name)
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        raise UrlMapError(
            f"{text_name}: no such URL map preset (presets: {', '.join(preset_names())}) "
            "and no such file"
        )
    try:
        return _parse(path.read_text(), origin=str(path))
    except OSError as exc:
        raise UrlMapError(f"{path}: cannot read the URL map ({exc.strerror})") from exc


def _parse(text: str, *, origin: str) -> UrlMap:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UrlMapError(f"{origin}: not valid TOML ({exc})") from exc
    try:
        spec = UrlMapSpec.model_validate(data)
    except ValidationError as exc:
        raise UrlMapError(f"{origin}: {_describe(exc, data)}") from exc
    return UrlMap(spec, origin)


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    problems = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = "map"
        if len(loc) >= 2 and loc[0] == "event" and isinstance(loc[1], int):
            where = f"[[event]] #{loc[1] + 1}"
            loc = loc[2:]
        field = ".".join(str(p) for p in loc) or "(whole)"
        problems.append(f"{where}: field {field}: {error['msg']}")
    return "; ".join(problems)
