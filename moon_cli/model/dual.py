"""The dual-encoder ("dual-flow", CLIP-style) baseline that MOON argues against, built from the same parts.

An image tower (the backbone's vision encoder, mean over its merged patch tokens) and a text tower (the
language model over the text tokens alone) never see each other; a product is the sum of its two unit
vectors, a query whichever towers it has input for:

    images ──visual──► (N_tok, H) ──mean per image, mean per row──► v (B, H) ─┐
                                                                               ├─► normalize(n(v) + n(t))
    text tokens ──language model──► (B, L', H) ──mean over real tokens──► t ──┘

It reads the same processor output as MOON (``Batch``), so the trainer, `moon embed` and `moon evaluate`
run it unchanged; the config that selects it is ``backbone.arch = "dual"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def text_only(batch, drop_ids: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's text tokens, compacted to the left: ids (B', L'), mask (B', L') and which rows (B',) had any."""
    keep = batch.attention_mask.bool()  # (B, L)
    for tok in drop_ids:
        keep &= batch.input_ids != tok
    lengths = keep.sum(1)  # (B,)
    rows = torch.nonzero(lengths > 0).flatten()  # (B',)
    width = int(lengths.max()) if len(rows) else 0
    ids = torch.zeros((len(rows), width), dtype=torch.long, device=batch.input_ids.device)
    mask = torch.zeros_like(ids)
    for j, r in enumerate(rows.tolist()):
        n = int(lengths[r])
        ids[j, :n] = batch.input_ids[r][keep[r]]
        mask[j, :n] = 1
    return ids, mask, rows


def image_rows(batch, vision_start_id: int) -> torch.Tensor:
    """For each image of the batch (in order), the row it belongs to: (N_images,)."""
    starts = batch.input_ids == vision_start_id  # (B, L): one vision-start token per image
    return torch.nonzero(starts)[:, 0]  # nonzero is row-major, the order the images were concatenated in


def dual_embeddings(model, batch) -> torch.Tensor:
    """(B, H) unit-norm embeddings of the two separate towers, summed where a row has both."""
    base, cfg = model.base, model.hf_config
    B, H = batch.input_ids.shape[0], model.dim
    text_vec = torch.zeros((B, H), device=batch.input_ids.device)
    image_vec = torch.zeros((B, H), device=batch.input_ids.device)
    has_text = torch.zeros(B, dtype=torch.bool, device=batch.input_ids.device)
    has_image = torch.zeros(B, dtype=torch.bool, device=batch.input_ids.device)

    ids, mask, rows = text_only(batch, (cfg.image_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id))
    if len(rows):
        hidden = model.backbone(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state  # (B', L', H)
        keep = mask.unsqueeze(-1).to(hidden.dtype)  # (B', L', 1)
        pooled = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1)  # (B', H)
        text_vec[rows] = F.normalize(pooled.float(), dim=-1)
        has_text[rows] = True

    if batch.pixel_values is not None:
        per_image = base.get_image_features(batch.pixel_values, batch.image_grid_thw).pooler_output  # N × (tok, H)
        means = torch.stack([feats.mean(0) for feats in per_image]).float()  # (N, H)
        owner = image_rows(batch, cfg.vision_start_token_id)  # (N,)
        summed = torch.zeros((B, H), device=means.device).index_add(0, owner, means)  # (B, H)
        image_vec = F.normalize(summed, dim=-1)
        has_image[owner] = True

    both = (has_text & has_image).unsqueeze(-1)  # (B, 1)
    fused = torch.where(both, F.normalize(text_vec + image_vec, dim=-1), text_vec + image_vec)  # one is zero otherwise
    return fused
