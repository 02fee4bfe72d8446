import torch, warnings
from jfbbench import problems, estimators
warnings.simplefilter("ignore")
for name, kw in [("tikhonov", {}), ("affine", {}), ("affine", dict(spectrum="nonnormal")), ("tanh_layer", {}), ("affine", dict(spectrum="orthogonal"))]:
    p = problems.make(name, lipschitz=0.9, **kw)
    d = estimators.make("deq", adjoint="dense").gradient(p)
    for adj in ["cg", "cg_normal", "gmres"]:
        e = estimators.make("deq", adjoint=adj).gradient(p)
        print(name, kw, adj, "err %.1e" % float((e.grad-d.grad).norm()/d.grad.norm()), e.stats["converged"], e.stats["adjoint_iterations"], e.stats["vjp_evals"], e.stats["jvp_evals"], e.stats.get("adjoint_symmetry_gap"))
