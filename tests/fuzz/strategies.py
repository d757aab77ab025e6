"""Hypothesis strategies: settings files of every mode, data files, holarchies.

Every case that passes validation must stay tiny (about a second): fields that decide how much
work a run does (`COST`) only ever get small valid values or invalid ones, never a large valid
number; sizes that allocate get small values or numbers too large to allocate at all.
"""
from __future__ import annotations

import math
import re
import typing
from typing import Any

import yaml
from hypothesis import strategies as st

from osmotic.dssl.config import DsslConfig
from osmotic.holonic.config import HolonicConfig
from osmotic.osml.config import OsmlConfig

CONFIGS = {"osml": OsmlConfig, "holonic": HolonicConfig, "dssl": DsslConfig}

BASE: dict[str, dict[str, Any]] = {
    "osml": {"mode": "osml", "epochs": 1, "hidden": 4, "dim": 3, "batch_size": 20,
             "cluster_every": 1, "cluster_samples": 20, "threads": 1,
             "data": {"generated": "simple", "seed": 0}},
    "holonic": {"mode": "holonic", "structure": "1P", "data": "digits", "rounds": 1,
                "local_epochs": 1, "pool_size": 120, "threads": 1},
    "dssl": {"mode": "dssl", "clients": 2, "rounds": 1, "local_steps": 1, "batch_size": 8,
             "pool_size": 60, "holdout": 20, "drift_batch": 8, "threads": 1},
}
"""Tiny valid settings of each mode (a run in about a second), the start of every mutation."""

HUGE = [2**62, 2**63, 2**64, 10**30, 10**100]
"""Numbers no allocation can honour: a size set to one fails at once, it does not fill memory."""

COST: dict[str, dict[str, tuple[int, bool]]] = {
    "osml": {"epochs": (2, False), "hidden": (8, True), "dim": (8, True), "window": (40, True),
             "batch_size": (10_000, True), "cluster_samples": (200, True), "threads": (2, False)},
    "holonic": {"rounds": (2, False), "local_epochs": (1, False), "pool_size": (300, True),
                "batch_size": (10_000, True), "threads": (2, False)},
    "dssl": {"rounds": (2, False), "local_steps": (2, False), "local_epochs": (1, False),
             "clients": (6, False), "pool_size": (200, True), "batch_size": (256, False),
             "drift_batch": (64, False), "mar_latents": (64, True), "threads": (2, False),
             "client_probes": (6, False)},
}
"""Per mode: field -> (largest valid value generated, whether HUGE values may be tried)."""

SAFE_IMPORTS = ["builtins:dict", "builtins:print", "json:dumps", "collections:OrderedDict",
                "torch.nn:Identity", "torch.nn:Linear", "osmotic.models.mlp:MLP",
                "osmotic.models.cnn:CNN", "osmotic.models.vit:ViT", "osmotic.models:MODELS",
                "no_such_module_xyz:Model", "osmotic:no_such_thing", ":", "a:", ":b", "a:b:c",
                "osmotic.models.<locals>:X", "math:pi", "torch.nn:Module"]
"""Import paths a fuzzed model name may take: nothing else is imported (a random module name
could be one that does something on import)."""

MODEL_FIELDS = {"encoder", "model", "backbone"}

WORDS = ["", " ", "1", "-1", "0", "nan", "inf", "-inf", "1e999", "0x10", "1_000", "yes", "no",
         "null", "~", "true", "mnist", "digits", "simple", "complex", "vit", "cnn", "mlp",
         "gru", "ray", "inprocess", "tensorboard", "iid", "dirichlet", "fl", "decl", "mae",
         "mar", "simsiam", "1P", "2L", "3L", "4L", "../../x", "/", ".", "/dev/null",
         "/proc/self/mem", "a" * 400, "é\u202e\u0000", "\n", "{", "[1, 2", "- a\n- b",
         "%(x)s", "{x}", "$HOME"]

SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(-10**30, 10**30),
    st.sampled_from([0, -1, 1, 2, 3, 2**31, 2**63, 2**64, -2**63, 10**100, -10**100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324, 0.5, 1.5]),
    st.text(max_size=12), st.sampled_from(WORDS),
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=6) | st.sampled_from(["format", "path", "x", "y", "id", "members"]),
        inner, max_size=4), max_leaves=10)
"""Any value YAML can hold, nested a little."""


def _costly(v: Any, cap: int) -> bool:
    """Whether `v`, coerced as pydantic would, is a valid number above `cap`."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return math.isfinite(v) and v > cap
    if isinstance(v, str):
        return bool(re.search(r"\d", v))
    return False


def _cost_value(cap: int, huge: bool) -> st.SearchStrategy[Any]:
    options = [st.integers(1, min(cap, 3)), st.integers(1, cap),
               st.integers(-10**6, 0), SCALARS.filter(lambda v: not _costly(v, cap))]
    if huge:
        options.append(st.sampled_from(HUGE))
    return st.one_of(options)


def affordable(mode: str, raw: bytes) -> bool:
    """Whether a settings file is cheap to run (or cannot run at all): an empty or truncated
    file means the defaults, a full-size run, which is no finding, only a slow case."""
    try:
        doc = yaml.safe_load(raw)
    except Exception:  # noqa: BLE001 - not YAML (RecursionError too): refused at once
        return True
    if doc is None:
        return False
    if not isinstance(doc, dict):
        return True
    named = doc.get("mode")
    mode = named if isinstance(named, str) and named in BASE else mode
    for key, (cap, _) in COST[mode].items():
        if key not in doc:
            if key in BASE[mode]:
                return False
        elif _costly(doc[key], cap):
            return False
    return True


def _literal_choices(annotation: Any) -> list[Any]:
    found: list[Any] = []
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    for arg in typing.get_args(annotation):
        found += _literal_choices(arg)
    return found


PATHS = st.sampled_from(["missing.csv", "data.csv", "data.npz", "images", ".", "",
                         "/nonexistent/x.npz", "out", "config.yaml", "\u0000", "a" * 300])
DATA_SPEC = st.one_of(
    st.sampled_from(["digits", "mnist", "npz", "csv", "images", "cifar", ""]),
    st.fixed_dictionaries(
        {"format": st.sampled_from(["npz", "csv", "images", "mnist", "digits", "parquet"])},
        optional={"path": PATHS | SCALARS, "x": st.sampled_from(["x", "y", "images"]) | SCALARS,
                  "y": st.sampled_from(["y", "x", "labels"]) | SCALARS,
                  "label": st.sampled_from(["label", "a"]) | SCALARS,
                  "size": st.sampled_from([1, 4, 8, [4, 4], [0, 4], [4], [4, 4, 4], -1, 0])
                  | SCALARS,
                  "grayscale": SCALARS, "extra": SCALARS}),
    VALUES,
)
OSML_DATA = st.one_of(
    st.fixed_dictionaries({"generated": st.sampled_from(["simple", "complex", "other"]) | SCALARS,
                           "seed": st.sampled_from([0, 1, -1, 2**64, "1", None]) | SCALARS}),
    st.fixed_dictionaries({"train": PATHS | SCALARS, "test": PATHS | SCALARS}),
    st.dictionaries(st.sampled_from(["train", "test", "generated", "seed", "x"]), SCALARS,
                    max_size=3),
    VALUES,
)
SMALL_PARAMS = st.dictionaries(
    st.sampled_from(["hidden", "layers", "depth", "heads", "dim", "patch", "width", "dropout",
                     "bias", "in_features", "classes", "x", ""]),
    st.one_of(st.integers(-2, 8), st.sampled_from(HUGE[2:]), st.floats(allow_nan=True),
              st.text(max_size=4), st.none(), st.booleans(), st.lists(st.integers(0, 4),
                                                                      max_size=3)),
    max_size=3)


def field_value(mode: str, name: str) -> st.SearchStrategy[Any]:
    """Values for setting `name` of `mode`: valid alternatives and wrong ones."""
    if name == "mode":
        return st.sampled_from(["osml", "holonic", "dssl", "fedprox", "", "OSML"]) | SCALARS
    if name in COST[mode]:
        return _cost_value(*COST[mode][name])
    if name in MODEL_FIELDS:
        return st.sampled_from(["gru", "mlp", "cnn", "vit", "", "GRU", *SAFE_IMPORTS]) | \
            SCALARS.filter(lambda v: not (isinstance(v, str) and ":" in v))
    if name == "engine":
        return st.sampled_from(["inprocess", "", "local"]) | SCALARS.filter(
            lambda v: v != "ray")
    if name in ("data", "test"):
        return OSML_DATA if mode == "osml" else DATA_SPEC
    if name in ("encoder_params", "model_params", "strategy_params"):
        return SMALL_PARAMS | VALUES
    if name == "agents":
        return st.lists(st.sampled_from(["0", "1", "M0", "M1", "x", "", "0"]), max_size=5) | \
            VALUES
    if name == "holarchy":
        return st.sampled_from(["missing.yaml", "", ".", "holarchy.yaml"]) | VALUES
    if name == "log":
        return st.lists(st.sampled_from(["tensorboard", "wandb", ""]), max_size=2) | VALUES
    info = CONFIGS[mode].model_fields[name]
    choices = _literal_choices(info.annotation)
    if choices:
        return st.sampled_from([c for c in choices if c != "ray"]) | SCALARS
    return VALUES


def field_names(mode: str) -> list[str]:
    return ["mode", *CONFIGS[mode].model_fields]


@st.composite
def config_mapping(draw: st.DrawFn, mode: str) -> Any:
    """A mutated copy of the mode's tiny settings (or something that is not a mapping)."""
    doc: dict[Any, Any] = dict(BASE[mode])
    names = field_names(mode)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["set", "set", "set", "unknown", "delete", "nest"]))
        if op == "set":
            name = draw(st.sampled_from(names))
            doc[name] = draw(field_value(mode, name))
        elif op == "unknown":
            doc[draw(st.text(max_size=10) | SCALARS)] = draw(VALUES)
        elif op == "delete":
            free = [k for k in doc if k not in COST[mode]]
            if free:
                del doc[draw(st.sampled_from(free))]
        else:
            name = draw(st.sampled_from([n for n in names if n not in COST[mode]]))
            depth = draw(st.integers(1, 30))
            value: Any = doc.get(name)
            for _ in range(depth):
                value = {name: value} if draw(st.booleans()) else [value]
            doc[name] = value
    top = draw(st.sampled_from(["mapping"] * 12 + ["list", "scalar", "empty"]))
    if top == "list":
        return [doc]
    if top == "scalar":
        return draw(SCALARS)
    if top == "empty":
        return None
    return doc


def _dump(doc: Any, flow: bool) -> str:
    try:
        return yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True, sort_keys=False)
    except yaml.YAMLError:  # a key YAML cannot write: say so as text
        return repr(doc)


@st.composite
def yaml_text(draw: st.DrawFn, doc: Any) -> bytes:
    """`doc` as YAML bytes, then perhaps mangled: truncated, garbled, re-encoded, replaced by
    deep nesting, an alias bomb, tags, duplicate keys."""
    text = _dump(doc, draw(st.booleans()))
    how = draw(st.sampled_from(["plain"] * 10 + [
        "truncate", "insert", "bom", "latin1", "deep", "aliases", "tags", "duplicate", "crlf",
        "binary", "tabs", "recursive"]))
    if how == "truncate":
        text = text[:draw(st.integers(0, max(0, len(text) - 1)))]
    elif how == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(
            [":", "- ", "{", "}", "[", "\t", "&a", "*a", "!", "%", "@", "`", "'", '"', "\x00",
             "\x85", "\ufeff", ": :", "? "]) | st.text(max_size=3)) + text[at:]
    elif how == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    elif how == "latin1":
        return text.encode() + b"\nname: caf\xe9\n"
    elif how == "deep":
        n = draw(st.integers(50, 5000))
        key = draw(st.sampled_from(list(BASE) + ["data", "holarchy", "x"]))
        inner = "{" + f"{key}: " if draw(st.booleans()) else "["
        close = "}" if inner.startswith("{") else "]"
        text = text + f"\nnested: {inner * n}1{close * n}\n"
    elif how == "aliases":
        levels = draw(st.integers(1, 6))
        lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 8)}]" for i in range(1, levels)]
        field = draw(st.sampled_from(["agents", "data", "model_params", "log", "x"]))
        text = text + "\n" + "\n".join(lines) + f"\n{field}: *a{levels - 1}\n"
    elif how == "tags":
        tag = draw(st.sampled_from(["!!python/object/apply:os.system ['true']",
                                    "!!python/name:os.system", "!!binary aGVsbG8=",
                                    "!!set {a, b}", "2001-12-14", "!!timestamp 2001-12-14",
                                    "!!float nan", "!!int 0o17", "!custom 1", "!!omap [a: 1]"]))
        field = draw(st.sampled_from(field_names("osml") + field_names("dssl")))
        text = text + f"\n{field}: {tag}\n"
    elif how == "duplicate":
        text = text + "\n" + text
    elif how == "crlf":
        text = text.replace("\n", "\r\n")
    elif how == "binary":
        return draw(st.binary(max_size=200))
    elif how == "tabs":
        text = text.replace("  ", "\t")
    elif how == "recursive":
        text = text + "\nx: &r [1, *r]\n"
    return text.encode()


# -- data files ------------------------------------------------------------------------------

CELLS = st.one_of(
    st.floats(-1e6, 1e6).map(lambda v: f"{v:.6g}"),
    st.floats(-1e6, 1e6).map(lambda v: f"{v:.6g}"),
    st.floats(-1e6, 1e6).map(lambda v: f"{v:.6g}"),
    st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "1e39", "-1e39", "1e400", "abc",
                     "1,5", "0x1p3", "1_0", "\u0661", "True", '"1"', "  2 ", "3.0.1"]),
    st.text(max_size=4),
)


@st.composite
def series_csv(draw: st.DrawFn, agents: list[tuple[str, int]] | None = None,
               steps: int | None = None) -> bytes:
    """An OSM-L series file (Agent<id>[<k>] columns), mostly well formed, then maybe broken."""
    if agents is None:
        agents = draw(st.lists(st.tuples(st.sampled_from(["0", "1", "2", "M0", "a.b", "x_1"]),
                                         st.integers(1, 3)),
                               min_size=1, max_size=4, unique_by=lambda t: t[0]))
    header = [f"Agent{a}[{j}]" for a, k in agents for j in range(k)]
    if draw(st.integers(0, 4)) == 0:  # a broken header
        at = draw(st.integers(0, len(header) - 1))
        header[at] = draw(st.sampled_from([
            "Agent0[0]", "Agent[0]", "agent0[0]", "Agent0[9]", "Agent0[-1]", "Agent0", "",
            "Agent0[1000000]", "Agent0[00]", "Agent 0[0]", "Agent0[0] ", "Agent\u00e90[0]",
            "Agent0[\u0661]"]) | st.text(max_size=6))
    if steps is None:
        steps = draw(st.integers(0, 40))
    good = st.floats(-3, 3).map(lambda v: f"{v:.4g}")
    messy = draw(st.integers(0, 3)) == 0
    rows = []
    for t in range(steps):
        row = [draw(CELLS) if messy else f"{math.sin(t + i) + (i % 3) * 0.1:.4g}"
               for i in range(len(header))]
        if messy and draw(st.integers(0, 6)) == 0:
            row = row[:draw(st.integers(0, len(row)))] + draw(st.lists(good, max_size=2))
        rows.append(",".join(row))
    text = "\n".join([",".join(header), *rows]) + ("\n" if draw(st.booleans()) else "")
    return draw(mangled(text.encode()))


@st.composite
def table_csv(draw: st.DrawFn, label: str = "label") -> bytes:
    """A tabular CSV: feature columns and an integer label column, then maybe broken."""
    features = draw(st.integers(0, 5))
    n = draw(st.integers(0, 60))
    classes = draw(st.integers(1, 4))
    names = [f"f{i}" for i in range(features)]
    names.insert(draw(st.integers(0, features)), label)
    if draw(st.integers(0, 5)) == 0:
        names = draw(st.lists(st.sampled_from(["f0", "label", "", "f0", " label", "x"]),
                              max_size=4))
    messy = draw(st.integers(0, 3)) == 0
    rows = []
    for i in range(n):
        row = []
        for name in names:
            if name == label:
                cell = str(i % classes)
                if messy and draw(st.integers(0, 5)) == 0:
                    cell = draw(st.sampled_from(["-1", "1.5", "nan", "", "1e30", "a", "2.0",
                                                 "9223372036854775808", "1e400"]))
            else:
                cell = draw(CELLS) if messy else f"{((i * 7 + len(name)) % 11) / 3:.4g}"
            row.append(cell)
        if messy and draw(st.integers(0, 8)) == 0:
            row = row[:-1]
        rows.append(",".join(row))
    text = "\n".join([",".join(names), *rows]) + "\n"
    return draw(mangled(text.encode()))


@st.composite
def mangled(draw: st.DrawFn, raw: bytes) -> bytes:
    """`raw`, or a damaged copy: truncated, bytes flipped or inserted, a BOM, Latin-1, CRLF,
    NUL bytes, empty."""
    how = draw(st.sampled_from(["keep"] * 6 + ["truncate", "flip", "insert", "bom", "latin1",
                                               "crlf", "nul", "empty", "cr", "quote"]))
    if how == "truncate" and raw:
        return raw[:draw(st.integers(0, len(raw) - 1))]
    if how == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        return raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1:]
    if how == "insert":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    if how == "latin1":
        return raw.replace(b"\n", b"\n\xe9", 1)
    if how == "crlf":
        return raw.replace(b"\n", b"\r\n")
    if how == "nul":
        return raw.replace(b",", b"\x00,", 1)
    if how == "empty":
        return b""
    if how == "cr":
        return raw.replace(b"\n", b"\r")
    if how == "quote":
        return raw.replace(b",", b',"', 1)
    return raw


def holon(ids: st.SearchStrategy[Any], depth: int) -> st.SearchStrategy[Any]:
    """A holon as written in YAML: a bare id, or {id, members, ...} with odd keys at times."""
    if depth == 0:
        return ids
    return st.one_of(ids, st.fixed_dictionaries(
        {"id": ids},
        optional={"members": st.lists(holon(ids, depth - 1), max_size=4) | SCALARS,
                  "aggregates": st.booleans() | SCALARS,
                  "weight": st.sampled_from([1, 0.5, 0, -1, math.nan, math.inf, "x", 10**30]),
                  "name": SCALARS, "children": VALUES}))


HOLON_IDS = st.sampled_from(["R", "H1", "H2", "0", "1", "2", "3", 0, 1, 2, "a b", "", "R"]) | \
    SCALARS


@st.composite
def holarchy_doc(draw: st.DrawFn, max_depth: int = 3) -> Any:
    """A holarchy file's content: a tree (maybe with repeated ids, cycles by name), edges
    (maybe to unknown holons), unknown keys; or not a holarchy at all."""
    root = draw(holon(HOLON_IDS, draw(st.integers(1, max_depth))))
    edge_ids = st.sampled_from(["R", "H1", "H2", "0", "1", "2", "3", "9", "zz", 0, 1]) | SCALARS
    doc: dict[Any, Any] = {"holarchy": root}
    if draw(st.booleans()):
        doc["edges"] = draw(st.lists(st.lists(edge_ids, min_size=0, max_size=3).map(list),
                                     max_size=4) | VALUES)
    if draw(st.integers(0, 4)) == 0:
        doc[draw(st.sampled_from(["holons", "edge", "root", "x"]))] = draw(VALUES)
    if draw(st.integers(0, 5)) == 0:
        doc["holarchy"] = draw(st.lists(holon(HOLON_IDS, 1), max_size=3) | VALUES)
    return doc if draw(st.integers(0, 10)) else draw(VALUES)


GOOD_HOLARCHY = {"holarchy": {"id": "R", "members": [{"id": "H1", "members": [0, 1, 2]},
                                                     {"id": "H2", "members": [3, 4]}]},
                 "edges": [["H1", "H2"], [0, 1]]}


@st.composite
def holarchy_text(draw: st.DrawFn) -> bytes:
    """Holarchy YAML: generated trees, a known good one mutated, deep chains, YAML cycles."""
    kind = draw(st.sampled_from(["tree"] * 6 + ["good", "deep", "wide", "cycle", "alias"]))
    if kind == "good":
        return draw(yaml_text(GOOD_HOLARCHY))
    if kind == "deep":
        n = draw(st.integers(2, 3000))
        return ("holarchy: " + "{id: h%d, members: [" * n % tuple(range(n)) + "t, u" +
                "]}" * n + "\n").encode()
    if kind == "wide":
        n = draw(st.integers(1, 60))
        members = ", ".join(str(i) for i in range(n))
        return f"holarchy: {{id: R, members: [{members}]}}\nedges: [[0, 1]]\n".encode()
    if kind == "cycle":  # by name: a holon listed inside itself
        return b"holarchy: {id: R, members: [{id: H, members: [0, {id: R, members: [1]}]}]}\n"
    if kind == "alias":  # a real cycle in the YAML graph
        return b"holarchy: &r {id: R, members: [0, *r]}\n"
    return draw(yaml_text(draw(holarchy_doc())))
