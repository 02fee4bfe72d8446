"""
Warm starts: DEQ and restarted JFB during training
==================================================

A few gradient steps on a tight tanh layer, each estimator started where its previous call
ended: warm-started DEQ (its forward solve and its adjoint solve), restarted JFB-2. The cost
of a gradient is T + VJP (applications of T plus vector–Jacobian products). From the second
step on the warm DEQ costs less than the cold one, by how much depends on how far θ moves
per step (here by 15 % at the end); restarted JFB costs K + K at every call, and what it
gives up is accuracy at one θ (see the error example), not cost.
"""

import matplotlib.pyplot as plt
import torch

from jfbbench import estimators, problems

problem = problems.make("tanh_layer", lipschitz=0.9, dim=16, seed=0)
params = list(problem.parameters())
settings = {
    "deq (cold)": estimators.make("deq", tol=1e-6),
    "deq (warm)": estimators.make("deq", tol=1e-6, warm_start=True),
    "restarted_jfb K=2": estimators.make("restarted_jfb", depth=2),
}
costs: dict[str, list[int]] = {name: [] for name in settings}
states: dict[str, object] = dict.fromkeys(settings)
for _ in range(15):
    grads = {}
    for name, est in settings.items():
        out = est.gradient(problem, state=states[name])
        states[name] = out.state
        costs[name].append(out.stats["operator_evals"] + out.stats["vjp_evals"])
        grads[name] = out.grad
    with torch.no_grad():  # move theta with the DEQ gradient, so x*(theta) drifts as in training
        offset = 0
        for p in params:
            n = p.numel()
            p -= 0.05 * grads["deq (cold)"][offset : offset + n].view_as(p)
            offset += n

fig, ax = plt.subplots(figsize=(6, 4))
for (name, c), marker in zip(costs.items(), "osd", strict=True):
    ax.plot(range(len(c)), c, marker=marker, label=name)
ax.set_yscale("log")
ax.set_xlabel("training step")
ax.set_ylabel("T + VJP per gradient")
ax.legend()
fig.tight_layout()
plt.show()
