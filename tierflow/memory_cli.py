"""``tierflow memory``: show a run's provenance, search a user's memories, list runs, forget a user.

Errors print one line on stderr, never a traceback: bad input exits 2, an unreachable server 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from tierflow.console import exit_code, fail
from tierflow.memory.errors import MemoryLayerError

if TYPE_CHECKING:  # the stores import numpy: `tierflow --help` must not pay for that
    from tierflow.memory.store import MemoryStore
    from tierflow.memory.types import Provenance

memory_app = typer.Typer(name="memory", help="inspect and manage what tierflow remembers across runs",
                         no_args_is_help=True, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True, soft_wrap=True)
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="settings TOML file (default: ./tierflow.toml)")]
UserOpt = Annotated[str, typer.Option("--user", help="user id whose memory to use")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="tenant (default: settings memory.tenant)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


@contextmanager
def _opened(config: Path | None) -> Iterator[MemoryStore]:
    from tierflow.memory.config import open_memory
    from tierflow.settings import SettingsError, load_settings

    try:
        settings = load_settings(config)
        store = open_memory(settings.memory.model_copy(update={"enabled": True}), settings.memory_path)
        assert store is not None
        with store:
            yield store
    except (MemoryLayerError, SettingsError) as exc:
        raise fail(str(exc), exit_code(exc)) from None


def provenance_tree(prov: Provenance) -> Tree:
    """A readable tree: session → run → intent, plan → subtasks → agent, tool calls, outcome; entities."""
    children: dict[str, list[tuple[str, str]]] = {}
    for e in prov.edges:
        children.setdefault(e.src, []).append((e.rel, e.dst))
    nodes = {n.key: n for n in prov.nodes}

    def label(key: str, rel: str | None) -> Text:
        n = nodes.get(key)
        if n is None:
            return Text(key)
        shown = {k: v for k, v in n.props.items() if k not in ("content_hash", "created_at", "run_id") and v not in
                 (None, "", "[]", "{}")}
        text = ", ".join(f"{k}={str(v)[:80]!r}" for k, v in shown.items())  # stored text: never read as markup
        return Text.assemble(*([(f"{rel} → ", "dim")] if rel else []), (n.kind, "bold"), f" {text}")

    def add(tree: Tree, key: str, seen: set[str]) -> None:
        for rel, dst in children.get(key, []):
            if dst in seen:
                continue
            add(tree.add(label(dst, rel)), dst, seen | {dst})

    roots = [e.src for e in prov.edges if e.rel == "HAS_RUN"] or [f"run:{prov.run_id}"]
    tree = Tree(label(roots[0], None))
    add(tree, roots[0], {roots[0]})
    return tree


@memory_app.command()
def show(run_id: Annotated[str, typer.Argument(help="the run's id (printed by `tierflow run`)")],
         user: UserOpt = "local", tenant: TenantOpt = None, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Print the provenance graph of RUN_ID."""
    with _opened(config) as store:
        try:
            prov = store.provenance(run_id, user_id=user, tenant=tenant)
        except MemoryLayerError as exc:
            raise fail(str(exc), exit_code(exc)) from None
    if as_json:
        print(json.dumps({"run_id": prov.run_id, "nodes": [asdict(n) for n in prov.nodes],
                          "edges": [asdict(e) for e in prov.edges]}, indent=2))
    else:
        out.print(provenance_tree(prov))


@memory_app.command()
def search(query: Annotated[str, typer.Argument(help="what to recall")],
           k: Annotated[int, typer.Option("-k", help="how many memories")] = 5,
           user: UserOpt = "local", tenant: TenantOpt = None, as_json: JsonOpt = False,
           config: ConfigOpt = None) -> None:
    """Print the memories nearest to QUERY, with their run ids and scores."""
    with _opened(config) as store:
        try:
            hits = store.search(query, k, user_id=user, tenant=tenant)
        except MemoryLayerError as exc:
            raise fail(str(exc), exit_code(exc)) from None
    if as_json:
        print(json.dumps([asdict(h) for h in hits], indent=2))
        return
    for h in hits:
        out.print(Text.assemble((f"{h.score:.3f}", "bold"), f" run {h.run_id} ({h.kind}): {h.text}"), highlight=False)


@memory_app.command()
def runs(user: UserOpt = "local", tenant: TenantOpt = None, limit: Annotated[int, typer.Option()] = 20,
         config: ConfigOpt = None) -> None:
    """List the user's remembered runs, newest first."""
    with _opened(config) as store:
        found = store.runs(user_id=user, tenant=tenant, limit=limit)
    for n in found:
        out.print(f"{n.props.get('run_id')}  {str(n.props.get('request'))[:100]}", highlight=False, markup=False)


@memory_app.command()
def forget(user: Annotated[str, typer.Option("--user", help="user whose memories to delete")],
           run: Annotated[str | None, typer.Option("--run", help="only this run")] = None,
           tenant: TenantOpt = None, config: ConfigOpt = None) -> None:
    """Delete a user's memories (or one run of them) from both stores, and their runs' checkpoints."""
    from tierflow.graphs.runner import forget_checkpoints, make_checkpointer
    from tierflow.settings import load_settings

    with _opened(config) as store:
        result = store.forget(user_id=user, tenant=tenant, run_id=run)
    settings = load_settings(config)
    checkpointer = make_checkpointer(settings.checkpointer, settings.home)
    try:
        threads = forget_checkpoints(checkpointer, user, run)
    finally:
        conn = getattr(checkpointer, "conn", None)
        if conn is not None:
            conn.close()
    out.print(f"forgot {result.memories} memories and {result.nodes} graph nodes; deleted the checkpoints of "
              f"{threads} run(s)", highlight=False)
