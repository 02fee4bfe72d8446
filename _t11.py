import torch, warnings
from jfbbench import problems
from jfbbench.solvers import fixed_point
p = problems.make("affine", lipschitz=0.9, batch=1)
x0 = p.initial_point()
with torch.no_grad():
    xs, st = fixed_point(p.operator, x0, 1e-12, 1000, method="broyden", memory=40, keep_stepper=True, per_sample=False)
b = st["stepper"]
n = x0.numel()
I = torch.eye(n, dtype=torch.float64)
H = torch.stack([b._h(I[i:i+1])[0] for i in range(n)], 1)  # columns H e_i
HT = torch.stack([b.inverse_transpose(I[i:i+1])[0] for i in range(n)], 1)
print("H^T consistent", float((HT - H.T).norm()))
Jm = p.W  # J = W
true = torch.linalg.inv(Jm - I)
print("rel err H vs (J-I)^-1", float((H-true).norm()/true.norm()), "filled", b.filled, "iters", st["iterations"])
dx, dg = b.U[0, b.filled-1], None
for tol in [1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12]:
    with torch.no_grad():
        xs, st = fixed_point(p.operator, x0, tol, 1000, method="broyden", memory=40, keep_stepper=True, per_sample=False)
    b = st["stepper"]
    H = torch.stack([b._h(I[i:i+1])[0] for i in range(n)], 1)
    v = (xs - p.target).reshape(-1)
    ut = torch.linalg.solve(I - Jm.T, v)
    u = -H.T @ v
    print(tol, st["iterations"], "H err %.2e" % float((H-true).norm()/true.norm()), "u err %.2e" % float((u-ut).norm()/ut.norm()))
