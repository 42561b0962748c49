"""Further peft methods for peftbench, each a few lines on ``PeftMethod``, registered through the
same hook as any plugin: LyCORIS (LoHa, LoKr), LoRA's variants (DoRA, rsLoRA, PiSSA, OLoRA, LoRA+,
LoRA-FA), orthogonal adapters (OFT, BOFT, HRA, RoAd), shared and random bases (VeRA, VB-LoRA,
RandLoRA), spectral and sparse updates (FourierFT, C3A, SHiRA), LoRA's relatives (DeLoRA,
GraLoRA, HiRA, MiSS), LN tuning, soft prompts (prompt tuning, P-tuning) and AdaLoRA.

peft's own per-architecture defaults choose the target modules (``c_attn`` on GPT-2,
``query``/``value`` on BERT); GPT-2's transposed ``Conv1D`` projections get ``fan_in_fan_out``.
Each method declares the model families it cannot train (``unsupported``), so a sweep refuses the
pair in one line before training; each module says where its learning rates come from.
"""

from __future__ import annotations

from peftbench import hookimpl
from peftbench_peft_extras import (
    adalora,
    lora_variants,
    low_rank_relatives,
    lycoris,
    norms,
    orthogonal,
    prompts,
    shared_bases,
    spectral_and_sparse,
)

METHODS = (
    *lycoris.METHODS,
    *lora_variants.METHODS,
    *orthogonal.METHODS,
    *shared_bases.METHODS,
    *spectral_and_sparse.METHODS,
    *low_rank_relatives.METHODS,
    *norms.METHODS,
    *prompts.METHODS,
    adalora.AdaLora,
)


@hookimpl
def register_methods(register):
    for method in METHODS:
        register(method())
