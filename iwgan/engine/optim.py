"""Adam over K members' stacked parameters, each member with its own learning rate and
betas (iwgan.engine.stacking; a single run uses torch.optim.Adam, iwgan.core.methods.adam).

Two arithmetics, chosen by the run's ``adam`` setting (iwgan.engine.config):

- ``"torch"`` (the default): torch.optim.Adam's own (its for-loop implementation, op for
  op). Members that share lr and betas go through exactly its calls, so a stack steps to
  the bit as ``torch.optim.Adam`` on the stacked tensors did before members could differ
  (tests/engine/test_member_settings.py); members that differ get their values as
  (K, 1, ...) tensors broadcast along the member dimension, in the same order of
  operations, which agrees with each member's single run to float rounding.
- ``"fused"``: torch's fused Adam kernel (``torch._fused_adam_``, one pass over each
  tensor instead of eight), on the whole stack where the members share lr and betas, on
  each member's slices where they do not. It rounds differently from ``"torch"`` in the
  last bit (the same arithmetic in one fused expression) and is about 5x faster on the
  stacked converged-profile parameters (docs/throughput.md); a single run with
  ``adam="fused"`` uses ``torch.optim.Adam(fused=True)``, the same kernel.

The param group keeps torch.optim.Adam's meaning: ``lr`` and ``betas`` are member 0's, and
the learning-rate schedule (torch.optim.lr_scheduler) scales ``lr`` as it scales a single
run's; member k's rate is ``lr`` where it shares member 0's, else its own lr times the
schedule's factor (``lr`` / member 0's lr). So checkpoints of stacks stepped by
torch.optim.Adam, and their schedulers' states, load as they are.
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import _get_scalar_dtype

ADAM_IMPLS = ("torch", "fused")


class MemberAdam(torch.optim.Optimizer):
    """Adam on stacked parameters (member k = index k of dim 0) with per-member ``lrs``,
    ``beta1s`` and ``beta2s`` (sequences of K floats)."""

    def __init__(self, params, lrs, beta1s, beta2s, eps: float = 1e-8, impl: str = "torch"):
        if impl not in ADAM_IMPLS:
            raise ValueError(f"adam must be one of {', '.join(ADAM_IMPLS)}, got {impl!r}")
        self.lrs, self.beta1s, self.beta2s = list(map(float, lrs)), list(map(float, beta1s)), \
            list(map(float, beta2s))
        if not len(self.lrs) == len(self.beta1s) == len(self.beta2s):
            raise ValueError("one lr, beta1 and beta2 per member")
        self.k, self.impl = len(self.lrs), impl
        self.uniform = (len(set(self.lrs)) == 1 and len(set(self.beta1s)) == 1
                        and len(set(self.beta2s)) == 1)
        super().__init__(list(params), {"lr": self.lrs[0],
                                        "betas": (self.beta1s[0], self.beta2s[0]), "eps": eps})
        self._constants: dict = {}

    def member_lrs(self) -> list[float]:
        """Every member's learning rate now (the schedule applied)."""
        lr = self.param_groups[0]["lr"]
        factor = lr / self.lrs[0] if self.lrs[0] else 1.0
        return [lr if own == self.lrs[0] else own * factor for own in self.lrs]

    def member_hyperparameters(self, k: int) -> dict:
        """Member k's settings as its single run's torch.optim.Adam holds them."""
        group = self.param_groups[0]
        return {"lr": self.member_lrs()[k], "betas": (self.beta1s[k], self.beta2s[k]),
                **({"initial_lr": self.lrs[k]} if "initial_lr" in group else {})}

    def _per_member(self, values, like: torch.Tensor) -> torch.Tensor:
        """Python floats (computed in double, as torch's Adam does) as a (K, 1, ...)
        tensor of ``like``'s dtype, to broadcast along the member dimension."""
        shape = (self.k,) + (1,) * (like.dim() - 1)
        return torch.tensor(values, dtype=like.dtype, device=like.device).reshape(shape)

    @torch.no_grad()
    def step(self, closure=None):
        group = self.param_groups[0]
        lrs, eps = self.member_lrs(), group["eps"]
        params, grads, avgs, sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                # as torch.optim.Adam keeps them: a float32 step count on the CPU
                state["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype()) \
                    if self.impl == "torch" else torch.zeros((), dtype=torch.float32,
                                                             device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            avgs.append(state["exp_avg"])
            sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if self.impl == "fused":
            self._fused(params, grads, avgs, sqs, steps, lrs, eps)
        else:
            for p, g, m, v, s in zip(params, grads, avgs, sqs, steps):
                self._torch_step(p, g, m, v, s, lrs, eps)

    def _torch_step(self, param, grad, exp_avg, exp_avg_sq, step_t, lrs, eps):
        """torch.optim.Adam's _single_tensor_adam (no weight decay, amsgrad, maximize),
        its scalars per member where the members differ."""
        step_t += 1
        step = step_t.item()
        if self.uniform:
            lr, beta1, beta2 = lrs[0], self.beta1s[0], self.beta2s[0]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            step_size = lr / bias_correction1
            denom = (exp_avg_sq.sqrt() / bias_correction2 ** 0.5).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
            return
        key = (param.dim(), param.dtype, param.device, step, tuple(lrs))
        if key not in self._constants:
            # cache the step's per-member scalars for every parameter of this shape
            self._constants = {k: v for k, v in self._constants.items() if k[3] == step}
            b1, b2 = self.beta1s, self.beta2s
            self._constants[key] = tuple(self._per_member(v, param) for v in (
                [1 - b for b in b1], b2, [1 - b for b in b2],
                [(1 - b ** step) ** 0.5 for b in b2],
                [-(lr / (1 - b ** step)) for lr, b in zip(lrs, b1)]))
        one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, neg_step_size = self._constants[key]
        exp_avg.lerp_(grad, one_minus_beta1)
        exp_avg_sq.mul_(beta2).add_(one_minus_beta2 * grad * grad)
        denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
        param.add_(neg_step_size * exp_avg / denom)

    def _fused(self, params, grads, avgs, sqs, steps, lrs, eps):
        torch._foreach_add_(steps, 1)
        if self.uniform:
            torch._fused_adam_(params, grads, avgs, sqs, [], steps, lr=lrs[0],
                               beta1=self.beta1s[0], beta2=self.beta2s[0], weight_decay=0.0,
                               eps=eps, amsgrad=False, maximize=False)
            return
        for k in range(self.k):
            torch._fused_adam_([p[k] for p in params], [g[k] for g in grads],
                               [m[k] for m in avgs], [v[k] for v in sqs], [], steps,
                               lr=lrs[k], beta1=self.beta1s[k],
                               beta2=self.beta2s[k], weight_decay=0.0, eps=eps,
                               amsgrad=False, maximize=False)
