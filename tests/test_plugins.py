"""Bring your own model: plug-in problems and estimators by module path and by entry point,
the ``from_module`` adapter, and the CLI package (``python -m jfbbench``, no import circle)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import finite_difference, rel

import jfbbench
from jfbbench import estimators, linalg, problems
from jfbbench.cli import main
from jfbbench.linalg import dense_jacobian

ROOT = Path(jfbbench.__file__).resolve().parent.parent

#: A user's plug-in module: a tanh equilibrium layer z <- tanh(W z + U x) with W = rho Q (Q
#: orthogonal, so ||W|| = rho and T is a rho-contraction), made a problem by from_module, and
#: an estimator of their own (JFB at twice the depth asked for).
PLUGIN = """
import torch
from jfbbench import problems
from jfbbench.estimators import JFB


class Layer(torch.nn.Module):
    def __init__(self, dim, rho, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        self.w = torch.nn.Parameter((rho * q).contiguous())
        self.u = torch.nn.Parameter(torch.randn(dim, 3, generator=g, dtype=torch.float64))

    def forward(self, z, x):
        return torch.tanh(z @ self.w.T + x @ self.u.T)


def make_problem(lipschitz=0.9, seed=0, dtype=torch.float64, device="cpu", dim=4):
    g = torch.Generator().manual_seed(seed + 100)
    layer = Layer(dim, lipschitz, seed).to(dtype=dtype, device=device)
    x = torch.randn(2, 3, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    target = torch.randn(2, dim, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    return problems.from_module(layer, x, target, lipschitz=lipschitz)


def make_estimator(depth=1, **settings):
    return JFB(depth=2 * depth, **settings)
"""


def _env(*paths):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(ROOT)])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _jfbbench(args, *paths, check=True):
    res = subprocess.run(
        [sys.executable, "-m", "jfbbench", *args], env=_env(*paths), capture_output=True, text=True, timeout=300
    )
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


@pytest.fixture
def plugin_dir(tmp_path):
    (tmp_path / "myplug.py").write_text(PLUGIN)
    yield tmp_path
    sys.modules.pop("myplug", None)  # each test imports its own copy
    problems.refresh()
    estimators.refresh()


@pytest.fixture
def entry_point_dir(tmp_path):
    """A distribution 'epplug' installed by hand: its module and a dist-info with
    entry_points.txt, as pip would leave them (no network, no build)."""
    (tmp_path / "epplug.py").write_text(PLUGIN)
    info = tmp_path / "epplug-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: epplug\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(
        "[jfbbench.problems]\nep_layer = epplug:make_problem\n\n"
        "[jfbbench.estimators]\nep_double_jfb = epplug:make_estimator\n"
    )
    yield tmp_path
    sys.modules.pop("epplug", None)


def test_python_m_jfbbench_help_runs_in_a_subprocess():
    res = _jfbbench(["--help"])
    for command in ("list", "sweep", "plot", "train", "validate"):
        assert command in res.stdout


def _top_level_imports(path: Path, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """jfbbench modules imported when ``module`` is imported (module level, not inside
    functions); ``from package import submodule`` depends on the submodule, not on the
    package's own code."""
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    nodes = list(tree.body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, (ast.If, ast.Try)):
            nodes += node.body + node.orelse + getattr(node, "finalbody", []) + getattr(node, "handlers", [])
        elif isinstance(node, ast.ExceptHandler):
            nodes += node.body
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("jfbbench")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("jfbbench"):
                subs = {f"{base}.{a.name}" for a in node.names}
                out |= subs & modules
                if subs - modules:
                    out.add(base)
    return out


def test_jfbbench_modules_import_without_a_circle():
    """The module-level import graph of the package (the CLI package included) has no cycle."""
    files = {}
    for path in (ROOT / "jfbbench").rglob("*.py"):
        rel_parts = path.relative_to(ROOT).with_suffix("").parts
        is_package = rel_parts[-1] == "__init__"
        name = ".".join(rel_parts[:-1] if is_package else rel_parts)
        files[name] = (path, is_package)
    names = set(files)
    graph = {
        m: {d for d in _top_level_imports(p, m, pkg, names) if d in files and d != m} for m, (p, pkg) in files.items()
    }
    assert {"jfbbench.cli", "jfbbench.cli.sweep", "jfbbench.__main__"} <= set(graph)
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(d) :] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_a_plugin_module_is_swept_from_the_cli(plugin_dir, tmp_path):
    out = tmp_path / "sweep.csv"
    args = ["sweep", "--problem", "myplug:make_problem", "--estimator", "deq", "jfb", "myplug:make_estimator"]
    args += ["--lipschitz", "0.8", "--depth", "1", "2", "--seed", "0", "--no-timing", "--out", str(out)]
    _jfbbench(args, plugin_dir)
    table = pd.read_csv(out)
    assert set(table["problem"]) == {"myplug:make_problem"}
    by = table.set_index(["estimator", table["depth"].fillna(0).astype(int)])["rel_error"]
    assert by[("deq", 0)] <= 1e-10
    # the plug-in estimator is JFB at twice the depth: its error is jfb's at K = 2
    assert by[("myplug:make_estimator", 1)] == pytest.approx(by[("jfb", 2)], rel=1e-9)
    assert by[("jfb", 2)] < by[("jfb", 1)]


def test_a_misspelled_plugin_is_a_one_line_usage_error(plugin_dir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    for name, message in [
        (
            "nosuchmod:make",
            "cannot import module 'nosuchmod' (no module named 'nosuchmod'); is its folder on PYTHONPATH?",
        ),
        ("myplug:nope", "has no attribute 'nope'"),
    ]:
        res = CliRunner().invoke(main, ["sweep", "--problem", name, "--out", str(tmp_path / "s.csv")])
        assert res.exit_code == 2, res.output
        assert message in res.output and len(res.output.strip().splitlines()) == 1
    problems.refresh()


def test_an_entry_point_plugin_is_swept_from_the_cli(entry_point_dir, tmp_path):
    out = tmp_path / "ep.csv"
    args = ["sweep", "--problem", "ep_layer", "--estimator", "deq", "ep_double_jfb", "jfb", "--lipschitz", "0.7"]
    _jfbbench(args + ["--depth", "2", "4", "--no-timing", "--out", str(out)], entry_point_dir)
    table = pd.read_csv(out)
    by = table.set_index(["estimator", table["depth"].fillna(0).astype(int)])["rel_error"]
    assert by[("deq", 0)] <= 1e-10
    assert by[("ep_double_jfb", 2)] == pytest.approx(by[("jfb", 4)], rel=1e-9)


def test_entry_points_are_read_in_process_with_their_origin(entry_point_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(entry_point_dir))
    problems.refresh()
    estimators.refresh()
    try:
        assert "ep_layer" in problems.names() and "ep_double_jfb" in estimators.names()
        assert problems.origin("ep_layer") == "entry point epplug 0.3 (epplug:make_problem)"
        assert problems.origin("affine") == "built-in"
        p = problems.make("ep_layer", lipschitz=0.6)
        assert p.lipschitz == 0.6 and p.contraction_guaranteed
        assert estimators.make("ep_double_jfb", depth=3).depth == 6
        listing = CliRunner().invoke(main, ["list"]).output
        assert "entry point epplug 0.3 (epplug:make_estimator)" in listing
        assert any(
            line.split()[:1] == ["ep_layer"] and "entry point epplug 0.3" in line for line in listing.splitlines()
        )
    finally:
        monkeypatch.undo()
        problems.refresh()
        estimators.refresh()
    assert "ep_layer" not in problems.names()


def test_module_path_names_resolve_in_the_registries(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    try:
        p = problems.make("myplug:make_problem", lipschitz=0.5, dim=3)
        assert p.initial_point().shape == (2, 3)
        assert problems.origin("myplug:make_problem") == f"module path {plugin_dir / 'myplug.py'}"
        assert "myplug:make_problem" in problems._REGISTRY and "myplug:nope" not in problems._REGISTRY
        with pytest.raises(ValueError, match="must not contain ':'"):
            problems.register("a:b")
    finally:
        problems.refresh()


def test_list_shows_where_each_name_comes_from():
    @problems.register("user_listed_problem", overwrite=True)
    def factory(lipschitz=0.5, seed=0):
        return problems.make("affine", lipschitz=lipschitz, seed=seed, dim=3)

    try:
        out = CliRunner().invoke(main, ["list"]).output
        assert f"user_listed_problem  register() in {__name__}" in out
        assert any(line.split() == ["tanh_layer", "built-in"] for line in out.splitlines())
    finally:
        problems._REGISTRY._factories.pop("user_listed_problem", None)


# ----------------------------------------------------------------------------- from_module


def _plugin_module(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    import importlib

    return importlib.import_module("myplug")


def dense_implicit_gradient(problem, x_star):
    """B^T (I - J^T)^{-1} v with J and B formed row by row from autograd (one gradient per
    entry of T(x*)) and an explicit dense solve: independent of the library's estimators."""
    params = problem.parameters()
    x = x_star.detach().clone().requires_grad_(True)
    fx = problem.operator(x).reshape(-1)
    jac_rows, b_rows = [], []
    for i in range(fx.numel()):
        gx, *gp = torch.autograd.grad(fx[i], [x, *params], retain_graph=True, allow_unused=True)
        jac_rows.append(gx.reshape(-1))
        b_rows.append(
            torch.cat(
                [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(gp, params, strict=True)]
            )
        )
    jac, bmat = torch.stack(jac_rows), torch.stack(b_rows)
    (v,) = torch.autograd.grad(problem.loss(x), x)
    u = torch.linalg.solve(torch.eye(fx.numel(), dtype=jac.dtype) - jac.T, v.reshape(-1))
    return bmat.T @ u


def test_from_module_gradient_matches_the_dense_implicit_gradient_and_finite_differences(plugin_dir, monkeypatch):
    p = _plugin_module(plugin_dir, monkeypatch).make_problem(lipschitz=0.9, seed=1, dim=4)
    x_star = linalg.newton_fixed_point(p.operator, p.initial_point())
    dense = dense_implicit_gradient(p, x_star)
    fd = finite_difference(p, lambda q: float(q.loss(linalg.newton_fixed_point(q.operator, q.initial_point()))))
    assert rel(dense, fd) <= 1e-7
    for adjoint in ("fixed_point", "dense"):
        assert rel(estimators.make("deq", adjoint=adjoint).gradient(p).grad, dense) <= 1e-9
    assert p.contraction_guaranteed and p.config["lipschitz_source"] == "declared"


def test_from_module_estimates_rho_and_says_it_is_not_guaranteed(plugin_dir, monkeypatch):
    mod = _plugin_module(plugin_dir, monkeypatch)
    declared = mod.make_problem(lipschitz=0.9, seed=2, dim=5)
    p = problems.from_module(declared.module, declared.x_input, declared.target)
    x_star = linalg.newton_fixed_point(p.operator, p.initial_point())
    x = x_star.clone().requires_grad_(True)
    dense_norm = float(torch.linalg.matrix_norm(dense_jacobian(p.operator(x), x), 2))
    assert p.lipschitz == pytest.approx(dense_norm, rel=1e-6)
    assert p.contraction_guaranteed is False and "power iteration at x*" in p.theory_note
    from jfbbench.theory import outside_reason

    assert "contraction not guaranteed" in outside_reason(p)


class _Truncating(torch.nn.Module):
    """A module whose output drops the last coordinate of the state."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, z, x):
        return self.inner(z, x)[:, :-1]


def test_from_module_refuses_bad_input(plugin_dir, monkeypatch):
    mod = _plugin_module(plugin_dir, monkeypatch)
    layer = mod.Layer(4, 0.5, 0)
    x, target = torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"f\(z, x\) failed at z = x0 of shape \(2, 5\) \(RuntimeError: mat1"):
        problems.from_module(layer, x, target, x0=torch.zeros(2, 5, dtype=torch.float64), lipschitz=0.5)
    with pytest.raises(ValueError, match=r"must return a tensor shaped like z \(2, 4\).*got \(2, 3\)"):
        problems.from_module(_Truncating(mod.Layer(4, 0.5, 0)), x, target, lipschitz=0.5)
    with pytest.raises(TypeError, match="f must be a torch.nn.Module"):
        problems.from_module(lambda z, x: z, x, target)
    layer.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters with requires_grad=True"):
        problems.from_module(layer, x, target, lipschitz=0.5)
    with pytest.raises(ValueError, match="lipschitz must lie in the open interval"):
        problems.from_module(mod.Layer(4, 0.5, 0), x, target, lipschitz=1.5)


def test_an_entry_point_cannot_take_a_built_in_name(tmp_path, monkeypatch):
    (tmp_path / "shadow.py").write_text("def make(**kw):\n    raise AssertionError('never built')\n")
    info = tmp_path / "shadow-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shadow\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[jfbbench.estimators]\ndeq = shadow:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    estimators.refresh()
    try:
        with pytest.warns(UserWarning, match=r"entry point 'deq' = 'shadow:make' .*shadow 1.0.* is ignored"):
            names = estimators.names()
        assert "deq" in names and estimators.origin("deq") == "built-in"
        assert type(estimators.make("deq")).__name__ == "DEQ"
    finally:
        monkeypatch.undo()
        estimators.refresh()


def test_deepinv_peers_are_registered_only_with_the_deq_api(tmp_path, monkeypatch):
    from importlib.machinery import ModuleSpec

    from jfbbench.estimators import deepinv_peers

    fake = tmp_path / "deepinv"
    (fake / "optim").mkdir(parents=True)
    (fake / "optim" / "optimizers.py").write_text("class BaseOptim:\n    pass\n")  # an old DeepInverse
    spec = ModuleSpec("deepinv", None, is_package=True)
    spec.submodule_search_locations = [str(fake)]
    monkeypatch.setattr(deepinv_peers.importlib.util, "find_spec", lambda name: spec)
    registered = []
    assert not deepinv_peers.deq_api_available()
    assert deepinv_peers.register_deepinv_peers(lambda name: registered.append) == [] and not registered
    (fake / "optim" / "optimizers.py").write_text("class DEQConfig:\n    jacobian_free: bool = False\n")
    assert deepinv_peers.deq_api_available()
    assert deepinv_peers.register_deepinv_peers(lambda name: registered.append) == ["deepinv_deq", "deepinv_jfb"]
