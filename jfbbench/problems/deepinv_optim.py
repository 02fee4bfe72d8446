"""A DeepInverse optimiser as a problem: ``from_deepinv(model, physics, y, x_true)``.

DeepInverse builds its iterative reconstructions as ``deepinv.optim`` optimisers (``PGD``,
``HQS``, ``GD``, ...): a fixed-point iterator applied to a state, with step sizes and
regularisation levels in ``model.params_algo`` (trainable ``nn.Parameter`` when built with
``unfold=True`` or ``DEQ=...`` and ``trainable_params``) and possibly a learned denoiser in
its prior. :func:`from_deepinv` makes one application of that iterator the operator T_theta,
so every jfbbench estimator (and DeepInverse's own DEQ, :mod:`jfbbench.estimators.deepinv_peers`)
computes gradients of the same equilibrium.

:func:`tikhonov_deblurring` builds a small example whose contraction factor is exact
(``jfbbench sweep --problem jfbbench.problems.deepinv_optim:tikhonov_deblurring``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._validation import check_choice, check_dtype, check_lipschitz, check_positive_int, check_seed
from .torch_module import AdaptedProblem, check_batched, half_squared_error

Tensor = torch.Tensor

#: The iterators whose one application is T (DeepInverse's DEQ supports these three too).
ITERATORS = {"PGDIteration": "PGD", "HQSIteration": "HQS", "GDIteration": "GD"}


class DeepInvProblem(AdaptedProblem):
    r"""T_theta(x) = one application of a DeepInverse optimiser's iterator,

        T_theta(x) = model.fixed_point.iterator({"est": (x,)}, f, g, params, y, physics)["est"][0]

    with the data fidelity f, prior g and parameters of the optimiser's last iteration (as
    DeepInverse's DEQ uses them): PGD x <- prox_{tau lambda g}(x - tau grad f(x)), HQS
    x <- prox_{tau lambda g}(prox_{tau f}(x)), GD x <- x - tau (grad f(x) + lambda grad g(x)).
    theta = the optimiser's parameters that require a gradient (trainable ``params_algo`` and
    any trainable prior, e.g. a denoiser's weights). L(x) = ``loss(x, x_true)`` (default
    1/2 ||x - x_true||^2); cold start ``x0`` (default A^T y, DeepInverse's own).

    ``lipschitz`` given: the declared contraction factor (``contraction_guaranteed = True``);
    otherwise ||J||_2 estimated by power iteration and ``contraction_guaranteed = False``.

    ``batched=True`` declares that the images of the batch (dimension 0 of x) are independent
    samples, which holds when the physics and the prior act on each image alone (DeepInverse's
    blurs, masks and denoisers without batch statistics do): the solvers may then stop each
    image at its own tolerance. The default False solves the batch as one vector, which is
    right whatever the physics or prior couple.
    """

    name = "from_deepinv"

    def __init__(
        self,
        model: Any,
        physics: Any,
        y: Tensor,
        x_true: Tensor,
        loss: Callable[[Tensor, Tensor], Tensor] | None = None,
        lipschitz: float | None = None,
        x0: Tensor | None = None,
        batched: bool = False,
    ) -> None:
        from deepinv.optim import BaseOptim

        if not isinstance(model, BaseOptim):
            raise TypeError(
                f"from_deepinv: model must be a deepinv.optim optimiser (PGD, HQS or GD), got {type(model).__name__}"
            )
        iterator = type(model.fixed_point.iterator).__name__
        if iterator not in ITERATORS:
            raise ValueError(
                f"from_deepinv: model's iterator must be one of {', '.join(ITERATORS)} "
                f"(optimisers PGD, HQS, GD), got {iterator}"
            )
        multi = [k for k, v in model.params_algo.items() if v is not None and len(v) > 1]
        if multi:
            raise ValueError(
                f"from_deepinv: params_algo[{multi[0]!r}] has {len(model.params_algo[multi[0]])} values (one per "
                "iteration); T must be the same map at every iteration, so give one value per parameter"
            )
        self.batched = check_batched(batched, "from_deepinv")
        self.model, self.physics = model, physics
        self.algorithm = ITERATORS[iterator]
        self.y, self.x_true = y.detach(), x_true.detach()
        self.target = self.x_true
        self._loss = loss or half_squared_error
        self._params = [p for p in model.parameters() if p.requires_grad]
        if not self._params:
            raise ValueError(
                "from_deepinv: the optimiser has no trainable parameters; build it with unfold=True "
                "and trainable_params=[...] (e.g. ['stepsize', 'lambda'])"
            )
        self.dtype, self.device = self.y.dtype, self.y.device
        self._x0 = (physics.A_adjoint(self.y) if x0 is None else x0).detach()
        self._set_contraction(lipschitz)
        self.config: dict[str, Any] = dict(
            algorithm=self.algorithm,
            prior=type(model.prior[0]).__name__,
            physics=type(physics).__name__,
            state_shape=str(tuple(self._x0.shape)),
            lipschitz_source=self.lipschitz_source,
            batched=self.batched,
        )

    def _step_arguments(self) -> tuple[Any, Any, dict[str, Any]]:
        it = self.model.max_iter - 1  # the parameters DeepInverse's DEQ step uses
        return (
            self.model.update_data_fidelity_fn(it),
            self.model.update_prior_fn(it),
            self.model.update_params_fn(it),
        )

    def operator(self, x: Tensor) -> Tensor:
        fidelity, prior, params = self._step_arguments()
        out = self.model.fixed_point.iterator({"est": (x,)}, fidelity, prior, params, self.y, self.physics)
        return out["est"][0]

    def __repr__(self) -> str:
        return f"from_deepinv({self.algorithm}, rho={self.lipschitz:.4g} {self.lipschitz_source})"


#: ``problems.from_deepinv(model, physics, y, x_true, loss=None, lipschitz=None, x0=None, batched=False)``:
#: a problem from a DeepInverse optimiser built with PGD, HQS or GD (see :class:`DeepInvProblem`).
from_deepinv = DeepInvProblem


def tikhonov_deblurring(
    algorithm: str = "PGD",
    lipschitz: float = 0.9,
    size: int = 8,
    blur: float = 1.0,
    noise: float = 0.01,
    seed: int = 0,
    dtype: Any = torch.float64,
    device: Any = "cpu",
) -> DeepInvProblem:
    r"""Deblurring with a Tikhonov prior, 1/2 ||Ax - y||^2 + lambda/2 ||x||^2, solved by
    DeepInverse's ``PGD``, ``HQS`` or ``GD`` (``algorithm``) with trainable step size tau and
    lambda; A a circular Gaussian blur (``BlurFFT``, std ``blur`` pixels, ||A|| = 1) on one
    ``size`` x ``size`` image, y = A x_true + ``noise`` n.

    Exact contraction factor rho = ``lipschitz``: lambda = 1/rho - 1 and tau = 1 (PGD, HQS),
    tau = rho (GD), so that T's Jacobian has eigenvalues (1 - tau s)/(1 + tau lambda) (PGD),
    1/((1 + tau s)(1 + tau lambda)) (HQS) or 1 - tau (s + lambda) (GD) over the eigenvalues s
    in [0, 1] of A^T A, all of modulus <= rho (= rho at s = 0).
    """
    import deepinv as dinv

    algorithm = check_choice(algorithm, "algorithm", tuple(ITERATORS.values()))
    rho = check_lipschitz(lipschitz)
    dtype, seed = check_dtype(dtype), check_seed(seed)
    check_positive_int(size, "size", minimum=2)
    g = torch.Generator().manual_seed(seed)
    x_true = torch.rand(1, 1, size, size, generator=g, dtype=torch.float64)
    kernel = dinv.physics.blur.gaussian_blur(sigma=(blur, blur)).to(torch.float64)
    physics = dinv.physics.BlurFFT(img_size=(1, size, size), filter=kernel)
    y = physics(x_true) + noise * torch.randn(x_true.shape, generator=g, dtype=torch.float64)
    lam = 1.0 / rho - 1.0
    tau = rho if algorithm == "GD" else 1.0
    cls = getattr(dinv.optim, algorithm)
    model = cls(
        data_fidelity=dinv.optim.L2(),
        prior=dinv.optim.prior.Tikhonov(),
        stepsize=tau,
        lambda_reg=lam,
        max_iter=1000,
        unfold=True,
        trainable_params=["stepsize", "lambda"],
    )
    model.to(dtype=dtype, device=device)
    with torch.no_grad():  # DeepInverse stores its parameters through float32: set them exactly
        model.params_algo["lambda"][0].fill_(lam)
        model.params_algo["stepsize"][0].fill_(tau)
    physics.to(device)
    problem = from_deepinv(
        model,
        physics,
        y.to(dtype=dtype, device=device),
        x_true.to(dtype=dtype, device=device),
        lipschitz=rho,
        batched=True,  # a circular blur and a Tikhonov prior act on each image alone
    )
    problem.config.update(size=size, blur=blur, noise=noise)
    return problem


__all__ = ["DeepInvProblem", "from_deepinv", "tikhonov_deblurring"]
