"""CUDA: every estimator on every family agrees with the CPU in float64, and the CUDA peak
memory of unrolling and JFB-K grows linearly in K. Marked ``gpu``; skipped, with the reason
printed, where CUDA is absent. The device and dtype options of the commands are checked
everywhere."""

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import rel

from jfbbench import estimators, problems
from jfbbench.cli import main
from jfbbench.measure.memory import cuda_peak_bytes

NO_CUDA = "CUDA is not available on this machine (the gpu tests run where torch.cuda.is_available())"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)

IMAGING = dict(patch=16, kernel_size=3, noise=0.02, dtype=torch.float64)
NET = dict(nc=(4, 4, 4, 4), nb=1, init="random", lipschitz_iters=0)
#: one small configuration per family, float64
FAMILIES = {
    "affine": dict(lipschitz=0.9, dim=24, batch=3),
    "tanh_layer": dict(lipschitz=0.9, dim=24, batch=3),
    "tikhonov": dict(lipschitz=0.9, dim=20, batch=3),
    "weighted_tv": dict(lipschitz=0.9, **IMAGING),
    "pnp_fb": dict(tau=0.5, sigma=0.05, **IMAGING, **NET),
    "drunet_fb": dict(**IMAGING, **NET),
}
ESTIMATORS = ["deq", "unrolled", "jfb", "restarted_jfb", "phantom", "neumann"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JFBBENCH_CACHE", str(tmp_path / "cache"))


def test_the_gpu_families_are_registered():
    assert set(FAMILIES) <= set(problems.names())


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_cuda_and_cpu_agree_in_float64(family, estimator):
    torch.manual_seed(0)
    cpu = problems.make(family, device="cpu", **FAMILIES[family])
    torch.manual_seed(0)
    cuda = problems.make(family, device="cuda", **FAMILIES[family])
    settings = dict(depth=4) if estimator != "deq" else dict(adjoint="gmres")
    a = estimators.make(estimator, **settings).gradient(cpu)
    b = estimators.make(estimator, **settings).gradient(cuda)
    assert b.grad.device.type == "cuda" and b.grad.dtype == torch.float64
    assert rel(b.grad.cpu(), a.grad) < 1e-10
    assert rel(b.x.cpu(), a.x) < 1e-10


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("estimator", ["unrolled", "jfb"])
def test_cuda_peak_memory_is_linear_in_depth(estimator):
    p = problems.make("tanh_layer", lipschitz=0.9, dim=512, batch=256, device="cuda")
    # from K = 4: below, the peak is set by the part that does not grow with K (measured on an
    # H200: 12.6 MB at K = 2, 1.05 MB per step from K = 4 on, 1.57 MB per step from 2 to 4)
    depths = [4, 8, 16, 32, 64]
    peaks = []
    for k in depths:
        est = estimators.make(estimator, depth=k)
        est.gradient(p)  # warm the allocator
        _, peak = cuda_peak_bytes(lambda est=est: est.gradient(p), torch.device("cuda"))
        assert peak is not None and peak > 0
        peaks.append(peak)
    slope, intercept = np.polyfit(depths, peaks, 1)
    fitted = slope * np.array(depths) + intercept
    # linear: the fit explains the peaks to a few percent, and each step of T adds one batch
    # of activations (batch x dim float64; 0.99987 of it measured on an H200)
    assert np.max(np.abs(fitted - peaks) / np.array(peaks)) < 0.05
    block = 256 * 512 * 8
    assert 0.95 * block <= slope < 1.5 * block


@pytest.mark.gpu
@needs_cuda
def test_float32_on_cuda_is_ieee_float32():
    """TensorFloat-32 is off on CUDA (cuDNN would use it for DRUNet's convolutions): a float32
    solve reaches 1e-5 and its gradient agrees with the CPU's to float32 accuracy."""
    config = dict(patch=64, kernel_size=3, noise=0.02, dtype=torch.float32, **NET)
    cpu = problems.make("drunet_fb", device="cpu", **config)
    cuda = problems.make("drunet_fb", device="cuda", **config)
    if hasattr(torch.backends.cudnn, "fp32_precision"):
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    a = estimators.make("jfb", depth=2, tol=1e-5).gradient(cpu)
    b = estimators.make("jfb", depth=2, tol=1e-5).gradient(cuda)
    assert b.stats["converged"] and b.grad.dtype == torch.float32
    assert rel(b.grad.cpu(), a.grad) < 1e-3


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is absent")
@pytest.mark.parametrize(
    "command", [["train", "--quick", "--problem", "weighted_tv", "--estimator", "jfb"], ["validate"]]
)
def test_commands_refuse_cuda_where_there_is_none_in_one_line(command, tmp_path):
    res = CliRunner().invoke(main, [*command, "--device", "cuda", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "--device='cuda' was asked for, but CUDA is not available" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    "command", [["train", "--quick", "--problem", "weighted_tv", "--estimator", "jfb"], ["validate"]]
)
def test_commands_refuse_an_unknown_dtype_in_one_line(command, tmp_path):
    res = CliRunner().invoke(main, [*command, "--dtype", "float16", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "--dtype must be a torch floating dtype" in res.output and "float16" in res.output


def test_train_runs_in_the_dtype_asked_for(tmp_path):
    out = tmp_path / "run.csv"
    args = ["train", "--quick", "--problem", "weighted_tv", "--estimator", "jfb", "--steps", "1", "--dtype", "float64"]
    res = CliRunner().invoke(main, [*args, "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    ckpt = torch.load(out.with_suffix(".ckpt.pt"), weights_only=False)
    ckpt["optimizer"]["state"] = {
        k: {n: v for n, v in st.items() if n != "step"} for k, st in ckpt["optimizer"]["state"].items()
    }
    dtypes = {t.dtype for t in _tensors(ckpt) if t.is_floating_point()}
    assert dtypes == {torch.float64}  # parameters, Adam's moments, the state bank


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def test_validate_runs_in_the_dtype_asked_for(tmp_path):
    """The round-off floor of the checks scales with the dtype's machine epsilon."""
    floors = {}
    for dtype in ("float32", "float64"):
        args = ["validate", "--problem", "affine", "--lipschitz", "0.5", "--seed", "0", "--max-depth", "4"]
        args += ["--restart-depth", "2", "--no-plots", "--dtype", dtype, "--out", str(tmp_path / dtype)]
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        floors[dtype] = float(pd.read_csv(tmp_path / dtype / "validation.csv.gz")["floor"].min())
    eps = torch.finfo(torch.float32).eps / torch.finfo(torch.float64).eps
    assert 0.1 * eps < floors["float32"] / floors["float64"] < 10 * eps
