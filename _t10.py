import torch, warnings
from jfbbench import problems, estimators
warnings.simplefilter("ignore")
for name, kw in [("affine", {}), ("tanh_layer", {}), ("tikhonov", {}), ("affine", dict(batch=1))]:
    p = problems.make(name, lipschitz=0.9, **kw)
    d = estimators.make("deq", adjoint="dense").gradient(p)
    j = estimators.make("jfb").gradient(p)
    print(name, "jfb err %.2e" % float((j.grad-d.grad).norm()/d.grad.norm()))
    for m in [5, 40]:
        for r in [0, 10, 400]:
            e = estimators.make("shine", refine=r, memory=m).gradient(p)
            print(" mem", m, "refine", r, "err %.2e" % float((e.grad-d.grad).norm()/d.grad.norm()), e.stats["converged"], e.stats["forward_iterations"], e.stats["vjp_evals"])
