"""Guided mixture of experts in place of a decoder layer's FFN.

    y = ½ · (shared(x) + mixture(x))

- ``shared`` is the layer's original FFN (the general path);
- ``mixture`` is, for a category token, the category expert; for an attribute token, the attribute
  expert (the *designated* experts: those tokens always go there); for every other token, the top-k
  routed experts weighted by the router's probabilities.

Every expert starts as a copy of the FFN, so at initialisation y == FFN(x): training starts from the
base model. Top-k weights are normalised by a *detached* sum — their values sum to one (keeping the
init exact) while the router still receives gradient, even for k = 1. The router's logits are
recorded in a ``RoutingContext``; the balancing loss is the pure function ``load_balancing_loss``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from moon_cli.model.config import MoEConfig
from moon_cli.model.processor import TokenType


class RoutingContext:
    """Per-forward state shared by all MoE layers: token types in, router logits out."""

    def __init__(self):
        self.token_types: torch.Tensor | None = None  # (B, L) long
        self.mask: torch.Tensor | None = None  # (B, L) bool, True = real token
        self.router_logits: list[torch.Tensor] = []  # per MoE layer: (T_routed, E)

    def begin(self, token_types: torch.Tensor | None, mask: torch.Tensor | None) -> None:
        self.token_types, self.mask, self.router_logits = token_types, mask, []

    def end(self) -> None:
        self.token_types = self.mask = None


def load_balancing_loss(router_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Switch-Transformer balancing loss, E · Σ_e f_e · P_e (= 1 when perfectly balanced).

    router_logits: (T, E) for the tokens that were routed. f_e: share of the T·k assignments that went to
    expert e; P_e: mean router probability of e.
    """
    if router_logits.numel() == 0:
        return router_logits.new_zeros(())
    E = router_logits.shape[-1]
    probs = router_logits.float().softmax(-1)  # (T, E)
    chosen = probs.topk(top_k, dim=-1).indices  # (T, k)
    f = F.one_hot(chosen, E).float().sum(1).mean(0) / top_k  # (E,)
    P = probs.mean(0)  # (E,)
    return E * (f * P).sum()


class GuidedMoE(nn.Module):
    def __init__(self, ffn: nn.Module, hidden_size: int, cfg: MoEConfig, ctx: RoutingContext):
        super().__init__()
        self.cfg, self.ctx = cfg, ctx
        self.shared = ffn
        self.experts = nn.ModuleList(copy.deepcopy(ffn) for _ in range(cfg.num_experts))
        self.router = nn.Linear(hidden_size, cfg.num_experts, bias=False)
        nn.init.normal_(self.router.weight, std=0.02)
        self.router.to(next(ffn.parameters()).dtype)
        self.category_expert = copy.deepcopy(ffn) if cfg.designated else None
        self.attribute_expert = copy.deepcopy(ffn) if cfg.designated else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, H = x.shape
        flat = x.reshape(-1, H)  # (T, H), T = B·L
        mixture = torch.zeros_like(flat)  # (T, H)
        routed = torch.ones(flat.shape[0], dtype=torch.bool, device=x.device)  # (T,)
        types = self.ctx.token_types
        if self.cfg.designated and types is not None:
            types = types.reshape(-1)  # (T,)
            for expert, kind in ((self.category_expert, TokenType.CATEGORY),
                                 (self.attribute_expert, TokenType.ATTRIBUTE)):
                idx = (types == int(kind)).nonzero(as_tuple=True)[0]  # (n,)
                if idx.numel():
                    mixture = mixture.index_copy(0, idx, expert(flat[idx]))
                    routed[idx] = False

        logits = self.router(flat)  # (T, E)
        probs = logits.float().softmax(-1)  # (T, E)
        top_p, top_e = probs.topk(self.cfg.top_k, dim=-1)  # (T, k)
        weights = (top_p / top_p.sum(-1, keepdim=True).detach()).to(flat.dtype)  # (T, k), sums to 1
        for e, expert in enumerate(self.experts):
            tok, slot = ((top_e == e) & routed[:, None]).nonzero(as_tuple=True)  # (n,), (n,)
            if tok.numel():
                mixture = mixture.index_add(0, tok, weights[tok, slot, None] * expert(flat[tok]))

        keep = routed if self.ctx.mask is None else routed & self.ctx.mask.reshape(-1)
        self.ctx.router_logits.append(logits[keep])  # balancing counts only real, freely routed tokens
        return (0.5 * (self.shared(flat) + mixture)).reshape(B, L, H)


def default_moe_layers(num_layers: int) -> list[int]:
    """The upper half of the decoder, where representations are most task-specific."""
    return list(range(num_layers // 2, num_layers))


def install_guided_moe(language_model: nn.Module, cfg: MoEConfig, ctx: RoutingContext) -> list[GuidedMoE]:
    """Replace the FFN of the configured decoder layers with a GuidedMoE; return the new modules."""
    layers = language_model.layers
    chosen = cfg.layers if cfg.layers is not None else default_moe_layers(len(layers))
    bad = [i for i in chosen if not 0 <= i < len(layers)]
    if bad:
        from moon_cli.errors import MoonError

        raise MoonError(f"moe.layers {bad} out of range: the backbone has {len(layers)} decoder layers "
                        f"(0..{len(layers) - 1})")
    hidden = language_model.config.hidden_size
    installed = []
    for i in chosen:
        moe = GuidedMoE(layers[i].mlp, hidden, cfg, ctx)
        layers[i].mlp = moe
        installed.append(moe)
    return installed
