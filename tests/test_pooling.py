"""Pooling modes: the balanced pool equals its hand-computed value, ignores padding and template tokens, and
an unknown mode is refused; a checkpoint keeps the pooling it was trained with."""

import json

import pytest
import torch
import torch.nn.functional as F

from moon_cli.errors import MoonError
from moon_cli.model import MoonConfig, MoonModel, TokenType, balanced_pool, mean_pool
from moon_cli.model.preset import preset_config

O, I, C, T, A, Q = (int(t) for t in (TokenType.OTHER, TokenType.IMAGE, TokenType.CROP, TokenType.TITLE,  # noqa: E741
                                      TokenType.ATTRIBUTE, TokenType.QUERY_TEXT))


def test_balanced_pool_equals_the_hand_computed_value_and_ignores_padding_and_template_tokens():
    torch.manual_seed(0)
    hidden = torch.randn(3, 6, 4)  # (B, L, H)
    types = torch.tensor([[O, I, C, O, T, A],   # photo + crop + text, a template token in the middle
                          [O, Q, Q, O, O, O],   # a text query; positions 3.. are padding
                          [O, I, I, O, O, O]])  # a photo query; positions 3.. are padding
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0]])
    got = balanced_pool(hidden, mask, types)  # (3, 4)

    v0 = F.normalize(hidden[0, 1:3].mean(0), dim=0)
    t0 = F.normalize(hidden[0, 4:6].mean(0), dim=0)
    torch.testing.assert_close(got[0], 0.5 * (v0 + t0))
    torch.testing.assert_close(got[1], F.normalize(hidden[1, 1:3].mean(0), dim=0))  # text alone
    torch.testing.assert_close(got[2], F.normalize(hidden[2, 1:3].mean(0), dim=0))  # photo alone

    # padding and template tokens never count: change them, the result stays
    noisy = hidden.clone()
    noisy[0, 0] += 100.0
    noisy[0, 3] -= 50.0
    noisy[1, 3:] = 1e4
    noisy[2, 3:] = -1e4
    torch.testing.assert_close(balanced_pool(noisy, mask, types), got)
    # while the paper's plain mean moves with the template token
    assert not torch.allclose(mean_pool(noisy, mask)[0], mean_pool(hidden, mask)[0])


def test_a_row_of_template_tokens_only_falls_back_to_the_mean():
    hidden = torch.randn(1, 3, 4)
    mask, types = torch.ones(1, 3, dtype=torch.long), torch.full((1, 3), O)
    torch.testing.assert_close(balanced_pool(hidden, mask, types), mean_pool(hidden, mask))


def test_unknown_pooling_mode_is_a_one_line_error_listing_the_modes(tmp_path):
    with pytest.raises(MoonError, match=r"unknown pooling mode 'max'; use one of mean, balanced"):
        MoonConfig().updated({"pooling": {"mode": "max"}})
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"pooling": {"mode": "cls"}}))
    with pytest.raises(MoonError, match=str(path)):
        MoonConfig.load(path)


def test_a_checkpoint_loads_with_the_pooling_it_was_trained_with(tmp_path):
    """A checkpoint saved before balanced pooling existed records mode "mean" and keeps it, whatever the
    preset's default is now; a balanced one stays balanced."""
    for mode in ("mean", "balanced"):
        model = MoonModel.from_preset("tiny", preset_config("tiny").updated({"pooling": {"mode": mode}}))
        model.save_pretrained(tmp_path / mode)
        assert json.loads((tmp_path / mode / "config.json").read_text())["pooling"]["mode"] == mode
        assert MoonModel.from_pretrained(tmp_path / mode).config.pooling.mode == mode
    a = MoonModel.from_pretrained(tmp_path / "mean").encode_queries([{"text": "red tee"}])
    b = MoonModel.from_pretrained(tmp_path / "balanced").encode_queries([{"text": "red tee"}])
    assert not torch.allclose(a, b)  # the two modes really pool differently
