"""The `online_lora` network: Chronos's tokens and T5 encoder, scoring assets into weights.

Each asset's indicator series (lookback days x indicators) are tokenised as Chronos does
(`chronos.MeanScaleUniformBins`: each series divided by its mean absolute value over the
window, then cut into uniform bins; a missing value is the pad token). The T5 token
embedding turns every indicator's bin id into a vector; an input projection combines the
indicators of one day into one `d_model` vector, the sequence the encoder reads
(`inputs_embeds`). The encoder's states are mean-pooled over the days present, a linear head
scores each asset, and a softmax over the date's assets gives long-only weights summing to
1 (fully invested, no cash slot: the paper's allocation over its 100 stocks).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

# Chronos's tokenizer settings (`ChronosConfig` of the released chronos-t5 models): scaled
# values in [-15, 15] are binned, ids 0 and 1 are the pad and end-of-sequence tokens.
LOW_LIMIT, HIGH_LIMIT = -15.0, 15.0
PAD_ID, EOS_ID, N_SPECIAL = 0, 1, 2
ENTROPY_EPS = 1e-8


def chronos_tokenizer(bins: int, lookback: int):
    """Chronos's mean-scale uniform-bin tokenizer with a vocabulary of `bins` ids (its
    `n_tokens`, the 2 special ids included). No end-of-sequence token: the encoder reads
    one step per day and pools them, so an extra step would carry nothing."""
    from chronos import ChronosConfig

    config = ChronosConfig(
        tokenizer_class="MeanScaleUniformBins",
        tokenizer_kwargs={"low_limit": LOW_LIMIT, "high_limit": HIGH_LIMIT},
        context_length=lookback,
        prediction_length=1,  # unused: nothing is decoded
        n_tokens=bins,
        n_special_tokens=N_SPECIAL,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        use_eos_token=False,
        model_type="seq2seq",
        num_samples=1,
        temperature=1.0,
        top_k=50,
        top_p=1.0,
    )
    return config.create_tokenizer()


def tokenize(tokenizer, series: np.ndarray) -> torch.Tensor:
    """Bin ids (assets x days x indicators) of `series` shaped the same; NaN → pad. Each
    (asset, indicator) series is scaled over its own window, as Chronos scales a context."""
    assets, days, indicators = series.shape
    context = torch.from_numpy(
        np.ascontiguousarray(series.transpose(0, 2, 1), dtype=np.float32)
    ).reshape(assets * indicators, days)
    ids, _, _ = tokenizer.context_input_transform(context)
    return ids.reshape(assets, indicators, days).permute(0, 2, 1).contiguous()


def new_encoder(bins: int, d_model: int, layers: int, heads: int):
    """A randomly initialised T5 encoder shaped as Chronos-T5's (ReLU feed-forward 4x wide,
    32 relative-position buckets), with dropout off: an online step recomputes the weights
    it traded, which dropout would change."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=bins, d_model=d_model, d_kv=d_model // heads, d_ff=4 * d_model,
        num_layers=layers, num_heads=heads, feed_forward_proj="relu", dropout_rate=0.0,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        layer_norm_epsilon=1e-6, pad_token_id=PAD_ID, eos_token_id=EOS_ID,
        is_encoder_decoder=False, use_cache=False,
    )  # fmt: skip
    return T5EncoderModel(config)


def load_encoder(path: str | Path):
    """The T5 encoder saved in the local directory `path` (never a download), dropout off."""
    from transformers import T5EncoderModel

    return T5EncoderModel.from_pretrained(
        str(path), local_files_only=True, dtype=torch.float32, dropout_rate=0.0
    )


class PortfolioNet(nn.Module):
    """Bin ids (assets x days x indicators) → long-only weights over the assets."""

    def __init__(self, encoder: nn.Module, indicators: int):
        super().__init__()
        d_model = encoder.config.d_model
        self.encoder = encoder
        self.project = nn.Linear(indicators * d_model, d_model)
        self.head = nn.Linear(d_model, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        assets, days, _ = ids.shape
        embed = self.encoder.get_input_embeddings()(ids)  # assets x days x ind x d_model
        steps = self.project(embed.reshape(assets, days, -1))
        present = (ids != PAD_ID).any(dim=-1)  # a day with no indicator at all is padding
        states = self.encoder(inputs_embeds=steps, attention_mask=present.long())
        hidden = states.last_hidden_state
        mask = present.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.softmax(self.head(pooled).squeeze(-1), dim=0)

    def add_lora(self, rank: int) -> list[nn.Parameter]:
        """Wrap the encoder with LoRA adapters on the attention's q and v (PEFT) and freeze
        everything else; answers the adapters' parameters, the only ones left trainable.
        LoRA's B starts at zero, so the network's output is unchanged until a step."""
        from peft import LoraConfig, get_peft_model

        with warnings.catch_warnings():
            # transformers' own deprecation notice, raised from inside PEFT
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            self.encoder = get_peft_model(
                self.encoder,
                LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q", "v"],
                           lora_dropout=0.0),
            )  # fmt: skip
        for name, p in self.named_parameters():
            p.requires_grad_("lora_" in name)
        return [p for p in self.parameters() if p.requires_grad]


def portfolio_loss(w: torch.Tensor, r: torch.Tensor, eta: float) -> torch.Tensor:
    """L(w, r) = -wᵀr - η·H(w), H(w) = -Σ w log(w + ε): minimising it seeks return and,
    for η > 0, spreads the weights (the diversifying sign; see `online.OnlineLoRA`)."""
    entropy = -(w * torch.log(w + ENTROPY_EPS)).sum()
    return -(w * r).sum() - eta * entropy
