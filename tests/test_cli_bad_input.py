"""Bad input to any ``tierflow`` command: one line on stderr naming what was wrong, exit 2, never a traceback.

Each case runs the installed console script in a fresh process, as a user would. Files the cases need
(a corrupt database, text that is not UTF-8, a home that is a file) are made in the test's folder; ``{tmp}``
in a case stands for it. Failures that are not the user's input (a memory server that is down) exit 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.timeout(120)
EXE = Path(sys.executable).with_name("tierflow")


def tierflow(*args: str | bytes, home: Path, env: dict[str, str] | None = None, stdin: bytes = b"",
             timeout: int = 90) -> subprocess.CompletedProcess[bytes]:
    """The console script with its own data folder; args may be bytes (not-UTF-8 argv, as a shell passes it)."""
    full_env = {**os.environ, "TIERFLOW_HOME": str(home), "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("TIERFLOW_CONFIG", None)
    return subprocess.run([str(EXE), *args], cwd=REPO, env=full_env, input=stdin, capture_output=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bad files the cases point at."""
    root = tmp_path_factory.mktemp("bad")
    (root / "corrupt.sqlite").write_bytes(b"this is not a SQLite database\n" * 200)
    (root / "home-corrupt").mkdir()
    (root / "home-corrupt" / "memory.sqlite").write_bytes(b"\x00garbage" * 500)
    (root / "home-corrupt" / "checkpoints.sqlite").write_bytes(b"\x00garbage" * 500)
    (root / "latin1.txt").write_bytes("caf\xe9 au lait, what is 2 times 3?".encode("latin-1"))
    (root / "empty.txt").write_bytes(b"")
    (root / "big.txt").write_bytes(b"x" * 30_000)
    (root / "a-file").write_text("I am a file, not a folder")
    (root / "bad.toml").write_text("default_tier = [")
    (root / "unknown-key.toml").write_text('colour = "red"\n')
    (root / "bad-tier.toml").write_text('[tiers.mobile]\nn_threads = -3\n')
    (root / "bad-budget.toml").write_text('[routing.budget]\nmax_tokens = "lots"\n')
    (root / "down-memory.toml").write_text(
        f'[memory]\nbackend = "neo4j+weaviate"\nneo4j_url = "bolt://127.0.0.1:{free_port()}"\n'
        f'weaviate_url = "http://127.0.0.1:{free_port()}"\ntimeout_s = 3\n')
    (root / "bad-suite.yaml").write_text("name: [unclosed\n")
    (root / "no-task.yaml").write_text("name: x\ndataset: {kind: jsonl, path: nowhere.jsonl}\n")
    (root / "spans.jsonl").write_text('{"not": "a span"\n')
    return root


# (case id, argv, extra environment, standard input, exit code, text the one-line error must contain)
CASES: list[tuple[str, list[str | bytes], dict[str, str], bytes, int, str]] = [
    ("no request", ["run"], {}, b"", 2, "no request: pass it as an argument"),
    ("empty request", ["run", ""], {}, b"", 2, "request is empty"),
    ("blank stdin", ["run", "-"], {}, b"  \n\t ", 2, "request is empty"),
    ("argv not UTF-8", ["run", b"what is \xff\xfe 2 times 3"], {}, b"", 2, "not valid UTF-8"),
    ("stdin not UTF-8", ["run", "-"], {}, b"caf\xe9 2*3", 2, "standard input is not UTF-8 text"),
    ("file not UTF-8", ["run", "--file", "{tmp}/latin1.txt"], {}, b"", 2, "is not UTF-8 text (invalid byte at"),
    ("file missing", ["run", "--file", "{tmp}/nope.txt"], {}, b"", 2, "nope.txt: no such file"),
    ("file is a folder", ["run", "--file", "{tmp}"], {}, b"", 2, "is a folder, not a file"),
    ("empty file", ["run", "--file", "{tmp}/empty.txt"], {}, b"", 2, "request is empty"),
    ("file too long", ["run", "--file", "{tmp}/big.txt"], {}, b"", 2, "the limit is 20000"),
    ("file and argument", ["run", "--file", "{tmp}/big.txt", "hello"], {}, b"", 2, "not both"),
    ("markup is not eaten", ["run", "--tier", "[bold]gpu[/bold]", "hi"], {}, b"", 2, "'[bold]gpu[/bold]'"),
    ("unknown tier", ["run", "--tier", "gpu", "hi"], {}, b"", 2, "names unknown tier 'gpu'"),
    ("unknown pattern", ["run", "--pattern", "swarm", "hi"], {}, b"", 2, "pattern 'swarm' is not available"),
    ("bad graph spec", ["run", "--graph", "nocolon", "hi"], {}, b"", 2, "must look like package.module:function"),
    ("bad checkpointer", ["run", "--checkpointer", "mysql://x", "hi"], {}, b"", 2, "checkpointer"),
    ("checkpointer under a file", ["run", "--checkpointer", "sqlite:///{tmp}/a-file/cp.sqlite", "hi"], {}, b"", 2,
     "cannot be created"),
    ("corrupt checkpointer", ["run", "--checkpointer", "sqlite:///{tmp}/corrupt.sqlite", "hi"], {}, b"", 2,
     "is unreadable (corrupt, or not SQLite)"),
    ("home is a file", ["run", "hi"], {"TIERFLOW_HOME": "{tmp}/a-file"}, b"", 2, "exists and is not a folder"),
    ("settings missing", ["run", "--config", "{tmp}/nope.toml", "hi"], {}, b"", 2, "does not exist"),
    ("settings not TOML", ["run", "--config", "{tmp}/bad.toml", "hi"], {}, b"", 2, "is not valid TOML"),
    ("unknown setting", ["run", "--config", "{tmp}/unknown-key.toml", "hi"], {}, b"", 2, "colour"),
    ("bad tier setting", ["run", "--config", "{tmp}/bad-tier.toml", "hi"], {}, b"", 2, "n_threads"),
    ("bad budget", ["run", "--config", "{tmp}/bad-budget.toml", "hi"], {}, b"", 2, "max_tokens"),
    ("bad env setting", ["run", "hi"], {"TIERFLOW_WORKER_MAX_STEPS": "many"}, b"", 2, "worker_max_steps"),
    ("resume unknown run", ["resume", "no-such-run"], {}, b"", 2, "no run 'no-such-run'"),
    ("resume corrupt db", ["resume", "r1"], {"TIERFLOW_HOME": "{tmp}/home-corrupt"}, b"", 2,
     "is unreadable (corrupt"),
    ("memory corrupt db", ["memory", "runs"], {"TIERFLOW_HOME": "{tmp}/home-corrupt"}, b"", 2,
     "memory database"),
    ("memory bad user", ["memory", "runs", "--user", "ann smith/../x"], {}, b"", 2, "user_id must be"),
    ("memory empty query", ["memory", "search", " "], {}, b"", 2, "recall query is empty"),
    ("memory server down", ["memory", "runs", "--config", "{tmp}/down-memory.toml"], {}, b"", 1, "Neo4j"),
    ("eval unknown suite", ["eval", "no-such-suite"], {}, b"", 2, "no-such-suite"),
    ("eval suite not YAML", ["eval", "{tmp}/bad-suite.yaml"], {}, b"", 2, "bad-suite.yaml"),
    ("eval suite incomplete", ["eval", "{tmp}/no-task.yaml"], {}, b"", 2, "no-task.yaml"),
    ("traces file missing", ["traces", "show", "r1", "--file", "{tmp}/nope.jsonl"], {}, b"", 2, "nope.jsonl"),
    ("traces file corrupt", ["traces", "show", "r1", "--file", "{tmp}/spans.jsonl"], {}, b"", 2, "spans.jsonl"),
]
# Command-line syntax errors are typer's: its usage message (several lines), exit 2, no traceback.
USAGE_CASES = [(["eval", "intents-small", "--limit", "0"], "Invalid value for '--limit'"),
               (["run", "--bogus", "x"], "No such option: --bogus"), (["nonsense"], "No such command 'nonsense'")]


def _fill(value: str | bytes, tmp: Path) -> str | bytes:
    return value.replace("{tmp}", str(tmp)) if isinstance(value, str) else value


@pytest.mark.parametrize(("args", "env", "stdin", "code", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_the_right_exit_code(files, tmp_path, args, env, stdin, code, message):
    proc = tierflow(*(_fill(a, files) for a in args), home=tmp_path, stdin=stdin,
                    env={k: str(_fill(v, files)) for k, v in env.items()})
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    assert "Traceback" not in out + err, err
    assert proc.returncode == code, (proc.returncode, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err  # one line, whatever the message holds
    assert message in lines[0], lines[0]


@pytest.mark.parametrize(("args", "message"), USAGE_CASES, ids=[" ".join(a) for a, _ in USAGE_CASES])
def test_command_line_syntax_errors_show_the_usage_and_exit_2(tmp_path, args, message):
    proc = tierflow(*args, home=tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err and message in " ".join(err.split()), err


def test_the_table_covers_at_least_thirty_cases():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)
