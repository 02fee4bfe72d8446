"""
Error against depth: unrolling, JFB-K and restarted JFB
=======================================================

The relative error of unrolling, JFB-K and restarted JFB (its second call at the same θ, started where the first ended)
against the exact implicit gradient, on a tanh layer whose pre-activations reach where tanh
curves (``weight=normalised``, ``preactivation=none``: the loose construction, nonlinear).
JFB-K's error is −Bᵀ(Jᵀ)ᴷu*, so it decays at the spectral radius r of J(x*), drawn as a
guide beside the declared ρ; here r is well below ρ, which is why every row of a sweep reports
both. Unrolling carries the error of its unconverged state too, and decays more slowly; restarted JFB joins JFB-K as its start nears x* (B5).
"""

import matplotlib.pyplot as plt
import torch

from jfbbench import estimators, linalg, problems

rho = 0.9
problem = problems.make("tanh_layer", lipschitz=rho, dim=16, seed=0, weight="normalised", preactivation="none")
exact = estimators.make("deq", tol=1e-12, adjoint_tol=1e-12).gradient(problem)
present = linalg.contraction_at(problem.operator, exact.x)
depths = [1, 2, 4, 8, 16, 32]


def rel_error(grad: torch.Tensor) -> float:
    return float(torch.linalg.norm(grad - exact.grad) / torch.linalg.norm(exact.grad))


errors: dict[str, list[float]] = {"unrolled": [], "jfb": [], "restarted_jfb, 2nd call": []}
for k in depths:
    errors["unrolled"].append(rel_error(estimators.make("unrolled", depth=k).gradient(problem).grad))
    errors["jfb"].append(rel_error(estimators.make("jfb", depth=k).gradient(problem).grad))
    restarted, state = estimators.make("restarted_jfb", depth=k), None
    for _ in range(2):
        est = restarted.gradient(problem, state=state)
        state = est.state
    errors["restarted_jfb, 2nd call"].append(rel_error(est.grad))

fig, ax = plt.subplots(figsize=(6.5, 4))
styles = [("o", "-"), ("s", "--"), ("d", ":")]
for (name, errs), (marker, dash) in zip(errors.items(), styles, strict=True):
    ax.semilogy(depths, errs, marker=marker, linestyle=dash, label=name)
r = present["spectral_radius"]
ax.semilogy(depths, [errors["jfb"][0] * r ** (k - 1) for k in depths], "k-.", lw=1, label=f"r^(K−1), r = {r:.2f}")
ax.semilogy(
    depths, [errors["jfb"][0] * rho ** (k - 1) for k in depths], color="grey", lw=1, label=f"ρ^(K−1), ρ = {rho}"
)
ax.set_xlabel("depth K")
ax.set_ylabel("relative error to the DEQ gradient")
ax.set_title(f"tanh_layer (loose), ρ = {rho}, ρ_loc = {present['rho_loc']:.2f}")
ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
fig.tight_layout()
plt.show()

for name, errs in errors.items():
    print(f"{name:24s}", " ".join(f"{e:.1e}" for e in errs))
