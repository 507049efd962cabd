"""Loss maths as pure functions.

`linear_cross_entropy` is the next-token loss computed straight from hidden states, chunk by chunk,
without ever holding the full [tokens x vocabulary] logits (the idea of Liger Kernel's fused linear
cross-entropy, Hsu et al. 2024, arXiv:2410.10989, and of Apple's Cut Cross-Entropy, Wijmans et al. 2024,
arXiv:2411.09009):

    loss = sum_i  logsumexp(W h_i) - (W h_i)[y_i]

Its gradients are formed inside the forward pass, chunk by chunk:

    d loss / d logits_i = softmax(W h_i) - onehot(y_i)
    d loss / d h_i      = (softmax - onehot) W
    d loss / d W        = sum_i (softmax - onehot)^T h_i

so only d/dh ([tokens x hidden]) and d/dW (when W trains) are kept for backward, never the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from adaptlab.registry import lookup


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int) -> Tensor:
        need_w = weight.requires_grad
        grad_h = torch.empty_like(hidden)
        acc = torch.promote_types(hidden.dtype, torch.float32)  # softmax in at least fp32
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=acc, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk):
            h = hidden[s:s + chunk]
            y = targets[s:s + chunk]
            # one fused log-softmax pass (not logsumexp's four), then the softmax in place from it
            logp = torch.log_softmax(h @ weight.t(), dim=-1, dtype=acc)
            total -= logp.gather(1, y[:, None]).sum()
            g = logp.exp_()
            g[torch.arange(len(y), device=y.device), y] -= 1.0
            g = g.to(hidden.dtype)
            grad_h[s:s + chunk] = g @ weight
            if need_w:
                grad_w += (g.t() @ h).to(acc)
        ctx.save_for_backward(grad_h, grad_w if need_w else torch.empty(0))
        ctx.need_w = need_w
        ctx.w_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype)
        gw = (grad_w * grad_out).to(ctx.w_dtype) if ctx.need_w else None
        return gh, gw, None, None


def linear_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int = 512) -> Tensor:
    """Summed cross-entropy of `targets` [N] under logits `hidden @ weight.T` ([N,H] x [V,H]), in chunks of
    `chunk` rows (512 keeps the fp32 [chunk x V] buffer near 100 MB for a 49k vocabulary while each chunk's
    matmul stays large)."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk)


class _LinearLogProbs(torch.autograd.Function):
    """Per-token log p(y_i) = (W h_i)[y_i] - logsumexp(W h_i), in chunks; backward recomputes each chunk's
    softmax, so neither pass holds the [tokens x vocabulary] logits:
        d/dh_i = g_i (onehot(y_i) - softmax(W h_i)) W,   d/dW = sum_i g_i (onehot - softmax)^T h_i."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int) -> Tensor:
        acc = torch.promote_types(hidden.dtype, torch.float32)
        out = torch.empty(hidden.shape[0], dtype=acc, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk):
            logp = torch.log_softmax(hidden[s:s + chunk] @ weight.t(), dim=-1, dtype=acc)
            out[s:s + chunk] = logp.gather(1, targets[s:s + chunk, None]).squeeze(1)
        ctx.save_for_backward(hidden, weight, targets)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        hidden, weight, targets = ctx.saved_tensors
        acc = grad_out.dtype
        grad_h = torch.empty_like(hidden)
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if ctx.needs_input_grad[1] else None
        for s in range(0, hidden.shape[0], ctx.chunk):
            h, y = hidden[s:s + ctx.chunk], targets[s:s + ctx.chunk]
            g = torch.softmax(h @ weight.t(), dim=-1, dtype=acc).neg_()
            g[torch.arange(len(y), device=y.device), y] += 1.0
            g = g.mul_(grad_out[s:s + ctx.chunk, None]).to(hidden.dtype)
            grad_h[s:s + ctx.chunk] = g @ weight
            if grad_w is not None:
                grad_w += (g.t() @ h).to(acc)
        return grad_h, grad_w.to(weight.dtype) if grad_w is not None else None, None, None


def token_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int = 512) -> Tensor:
    """log p(targets[i] | hidden[i]) under logits `hidden @ weight.T`, [N], without materialising the logits."""
    if hidden.shape[0] == 0:
        return hidden.sum(-1) * 0.0
    return _LinearLogProbs.apply(hidden, weight, targets, chunk)


def sequence_sums(values: Tensor, segment: Tensor, n: int) -> Tensor:
    """Sum per sequence: out[j] = sum_{i: segment[i] = j} values[i] (the loss-masked sequence log-prob
    log pi(y|x) = sum_t log pi(y_t | x, y_<t) when `values` are token log-probs of the response tokens)."""
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, segment, values)


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Per-pair reward-model loss  -log sigmoid(r(x, y_w) - r(x, y_l))  (Bradley & Terry 1952; InstructGPT,
    Ouyang et al. 2022, arXiv:2203.02155, eq. 1)."""
    return -F.logsigmoid(chosen - rejected)


def dpo_sigmoid(chosen_ratio: Tensor, rejected_ratio: Tensor, beta: float, chosen_len: Tensor,
                rejected_len: Tensor) -> Tensor:
    """DPO (Rafailov et al. 2023, arXiv:2305.18290, eq. 7):  -log sigmoid(beta (rho_w - rho_l)),
    rho = log pi(y|x) - log pi_ref(y|x)."""
    return -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))


def dpo_ipo(chosen_ratio: Tensor, rejected_ratio: Tensor, beta: float, chosen_len: Tensor,
            rejected_len: Tensor) -> Tensor:
    """IPO (Azar et al. 2023, arXiv:2310.12036, eq. 17) with log-ratios averaged per response token, as the
    IPO authors and trl do:  (rho_w / |y_w| - rho_l / |y_l| - 1 / (2 beta))^2."""
    delta = chosen_ratio / chosen_len.clamp(min=1) - rejected_ratio / rejected_len.clamp(min=1)
    return (delta - 1 / (2 * beta)) ** 2


DPO_LOSSES = {"sigmoid": dpo_sigmoid, "ipo": dpo_ipo}


def dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float,
             kind: str, chosen_len: Tensor, rejected_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair loss (`DPO_LOSSES[kind]`) and each side's implicit reward r = beta (log pi - log pi_ref)."""
    chosen_ratio, rejected_ratio = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    loss = lookup(DPO_LOSSES, kind, "DPO loss")(chosen_ratio, rejected_ratio, beta, chosen_len, rejected_len)
    return loss, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def rloo_advantages(rewards: Tensor, k: int, normalize: bool = False) -> Tensor:
    """REINFORCE leave-one-out advantages (Kool et al. 2019; RLOO, Ahmadian et al. 2024, arXiv:2402.14740,
    eq. 5) for `rewards` [P * k], the k samples of each prompt adjacent:

        A_i = r_i - 1/(k-1) sum_{j != i} r_j = r_i - (sum_j r_j - r_i) / (k - 1)

    `normalize` then whitens over the batch, (A - mean A) / (std A + 1e-4), as trl's `normalize_advantages`."""
    if k < 2:
        raise ValueError(f"RLOO needs k >= 2 samples per prompt, got {k}")
    grouped = rewards.view(-1, k)
    advantages = (grouped - (grouped.sum(1, keepdim=True) - grouped) / (k - 1)).view(-1)
    if normalize:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-4)
    return advantages


# ---- PPO ------------------------------------------------------------------------------------------------------
# Per-token tensors are [S, L]: S sampled answers, right-padded to L tokens, `mask` 1 on real answer tokens.


def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = log pi(y_t) - log pi_ref(y_t): unbiased for KL(pi || pi_ref) under samples of pi, high variance,
    can be negative per token."""
    return logp - ref_logp


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = (r - 1) - log r with r = pi_ref(y_t) / pi(y_t): unbiased under samples of pi (E[r] = 1), and >= 0
    for every token because log r <= r - 1."""
    log_r = ref_logp - logp
    return torch.expm1(log_r) - log_r


KL_ESTIMATORS = {"k1": kl_k1, "k3": kl_k3}


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str = "k1") -> Tensor:
    """Per-token estimate of KL(pi || pi_ref) from the log-probs of tokens sampled from pi: `KL_ESTIMATORS[kind]`
    (J. Schulman, "Approximating KL divergence", 2020, http://joschu.net/blog/kl-approx.html; trl's
    `kl_estimator` "k1" / "k3")."""
    return lookup(KL_ESTIMATORS, kind, "KL estimator")(logp, ref_logp)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x - mean) / sqrt(var + eps) over the masked entries, the variance with Bessel's correction (as trl's
    `masked_whiten`); `shift_mean=False` adds the mean back (scale only). Padding stays where it was."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask) * (n / (n - 1).clamp(min=1))
    out = (x - mean) * torch.rsqrt(var + eps)
    return out if shift_mean else out + mean


def gae_advantages(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0,
                   lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, arXiv:1506.02438, eq. 16) per answer token:

        delta_t = r_t + gamma V_{t+1} - V_t          (V after the answer's last token = 0: the episode ends)
        A_t     = delta_t + gamma lam A_{t+1}  = sum_l (gamma lam)^l delta_{t+l}
        R_t     = A_t + V_t                          (the value target, "returns")

    `rewards`, `values`, `mask` are [S, L], right-padded. Returns (advantages, returns), zero on padding.
    With gamma = lam = 1, A_t = sum_{u >= t} r_u - V_t (reward-to-go minus value)."""
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        following = mask[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        next_value = values[:, t + 1] * following if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last * following
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def ppo_policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, cliprange: float = 0.2) -> tuple[Tensor, Tensor]:
    """Per-token clipped surrogate of PPO (Schulman et al. 2017, arXiv:1707.06347, eq. 7), as a loss:

        rho_t = exp(log pi(y_t) - log pi_old(y_t))
        L_t   = max(-A_t rho_t, -A_t clip(rho_t, 1 - eps, 1 + eps))

    Returns (L_t, clipped_t) where `clipped_t` marks tokens whose clipped term binds (no gradient flows)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - cliprange, 1 + cliprange)
    return torch.maximum(unclipped, clipped), clipped > unclipped


def ppo_value_loss(values: Tensor, old_values: Tensor, returns: Tensor,
                   cliprange_value: float = 0.2) -> tuple[Tensor, Tensor]:
    """Per-token clipped value loss (PPO as in OpenAI baselines ppo2 and trl):

        V_clip = old_V + clip(V - old_V, -eps_v, eps_v)
        L_t    = 1/2 max((V - R)^2, (V_clip - R)^2)

    Returns (L_t, clipped_t) where `clipped_t` marks tokens whose clipped term is the larger."""
    clipped_values = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    unclipped, clipped = (values - returns) ** 2, (clipped_values - returns) ** 2
    return 0.5 * torch.maximum(unclipped, clipped), clipped > unclipped
