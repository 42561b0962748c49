"""The CUDA-only paths, on a real GPU: skipped without one (run by benchmarks/gpu_check.sh).

bf16 autocast with bf16 frozen weights and fp32 master weights, the fused AdamW, pinned
non-blocking copies, ``--compile``, CUDA peak memory, the MFU estimate, a CUDA out-of-memory
error recorded as a failed run while the sweep goes on, and reload identical on the GPU.
"""

from __future__ import annotations

import pytest
import torch

import peftbench
from fake_plugins import HeadProbe, MethodsPlugin
from peftbench.costs import PEAK_BF16_TFLOPS
from peftbench.plugins import collect_methods

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = torch.device("cuda")


def sweep(data, out, **settings):
    settings = {"model": "tiny-gpt2", "max_steps": 4, "device": "cuda", "progress": False, **settings}
    return peftbench.run(dataset=str(data), out=out, **settings)


def context(data, out, precision="bf16"):
    from peftbench.runs.context import build_context
    from peftbench.runs.executors import LocalExecutor
    from peftbench.settings import sweep_config

    config = sweep_config(model="tiny-gpt2", dataset=str(data), out=out, device="cuda", precision=precision)
    return build_context(config, LocalExecutor().start("cuda", precision))


def test_bf16_stores_frozen_weights_in_bf16_and_trains_fp32_masters(keyword_dataset, tmp_path):
    from peftbench.train import train

    ctx = context(keyword_dataset, tmp_path)
    method = collect_methods().get("lora").method
    hp = method.hyperparameters()
    model = method.prepare(ctx.fresh_model(0), ctx.task, hp)
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    model = ctx.place(model, trained)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if name in trained}
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert all(p.is_cuda for p in model.parameters())
    assert {dtypes[name] for name in trained} == {torch.float32}
    assert torch.bfloat16 in {dtype for name, dtype in dtypes.items() if name not in trained}
    stats = train(
        model, ctx.train, hp, ctx.train_config.model_copy(update={"max_steps": 3}), 0, CUDA, ctx.pad_id
    )
    assert stats.steps == 3 and all(torch.isfinite(torch.tensor(loss)) for _, loss in stats.loss_history)
    after = dict(model.named_parameters())
    assert all(after[name].dtype == torch.float32 for name in trained)  # masters stay fp32
    assert any(not torch.equal(before[name], after[name]) for name in trained)


def test_the_optimiser_is_the_fused_adamw(keyword_dataset, tmp_path, monkeypatch):
    import peftbench.train as training

    made = []
    real = torch.optim.AdamW

    def spy(*args, **kwargs):
        made.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(training.torch.optim, "AdamW", spy)
    board = sweep(keyword_dataset, tmp_path, methods="lora", references=False)
    assert board.records[0].status == "complete"
    assert made and made[0]["fused"] is True and made[0]["foreach"] is False


def test_batches_are_copied_from_pinned_memory(monkeypatch):
    from peftbench.train import to_device

    pinned = []
    real = torch.Tensor.pin_memory
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t, *a: pinned.append(1) or real(t, *a))
    batch = {"input_ids": torch.arange(12).view(3, 4), "attention_mask": torch.ones(3, 4, dtype=torch.long)}
    moved = to_device(batch, CUDA)
    torch.cuda.synchronize()
    assert len(pinned) == 2 and all(v.is_cuda for v in moved.values())
    assert all(torch.equal(moved[k].cpu(), batch[k]) for k in batch)


def test_a_compiled_run_completes_and_reloads_identically(keyword_dataset, tmp_path):
    board = sweep(keyword_dataset, tmp_path, methods="lora", references=False, compile=True)
    record = board.records[0]
    assert record.status == "complete", record.error
    assert record.train_config["compile"] is True
    assert record.reload["predictions_identical"] is True


def test_gpu_runs_record_peak_memory_mfu_and_reload_identically(keyword_dataset, tmp_path):
    board = sweep(keyword_dataset, tmp_path, methods="lora,prefix_tuning")
    records = {r.method: r for r in board.records}
    assert all(r.status == "complete" for r in records.values()), [r.error for r in records.values()]
    assert all(r.environment["device"] == "cuda" for r in records.values())
    for name in ("lora", "prefix_tuning"):
        record = records[name]
        assert record.train_config["precision"] == "bf16"  # what auto means on a GPU
        assert record.reload["predictions_identical"] is True
        assert 0 < record.costs["peak_memory_mb"] < torch.cuda.get_device_properties(0).total_memory / 2**20
        if any(card in torch.cuda.get_device_name() for card in PEAK_BF16_TFLOPS):
            assert 0 < record.costs["model_flops_utilisation"] < 1


class OutOfMemory(HeadProbe):
    """Asks the GPU for far more memory than any card has, while preparing."""

    name = "out_of_memory"
    description = "Allocates 64 TiB on the GPU."

    def prepare(self, model, task, hp):
        torch.empty(2**46, dtype=torch.uint8, device="cuda")
        return super().prepare(model, task, hp)


def test_a_cuda_out_of_memory_is_a_failed_run_and_the_sweep_goes_on(
    keyword_dataset, tmp_path, register_plugin
):
    register_plugin(MethodsPlugin(OutOfMemory()))
    board = sweep(keyword_dataset, tmp_path, methods="out_of_memory,lora", references=False)
    records = {r.method: r for r in board.records}
    assert records["out_of_memory"].status == "failed"
    assert "OutOfMemoryError" in records["out_of_memory"].error
    assert "(during prepare)" in records["out_of_memory"].error
    assert records["lora"].status == "complete"
    assert records["lora"].reload["predictions_identical"] is True


def test_a_saved_state_continues_on_the_gpu_to_the_run_trained_straight_through(keyword_dataset, tmp_path):
    """The fused AdamW's moments and the CUDA generator (dropout) travel through a saved state."""
    from peftbench.runs.context import build_context
    from peftbench.runs.executors import LocalExecutor
    from peftbench.runs.runner import execute_run
    from peftbench.runs.spec import make_spec
    from peftbench.settings import sweep_config

    settings = dict(methods="lora", max_steps=8, checkpoints=4, references=False, measure_inference=False)
    (reference,) = sweep(keyword_dataset, tmp_path / "straight", **settings).records
    config = sweep_config(model="tiny-gpt2", dataset=str(keyword_dataset), device="cuda", **settings)
    ctx = build_context(config, LocalExecutor().start("cuda", config.train.precision))
    entry = collect_methods().get("lora")
    hp = entry.method.hyperparameters()
    first = make_spec(ctx, entry, hp, 0, "tune", until=4, keep_state=True)
    assert execute_run(ctx, first, tmp_path / "unused", state_dir=tmp_path / "state").status == "complete"
    final = make_spec(ctx, entry, hp, 0, "final", resume=first.run_id)
    assert final.run_id == reference.run_id
    record = execute_run(ctx, final, tmp_path / "adapter", resume=tmp_path / "state")
    assert record.status == "complete" and record.training["continued_from"] == first.run_id
    assert record.predictions == reference.predictions  # GPU kernels may sum in another order:
    assert record.metrics == pytest.approx(reference.metrics, abs=1e-4)  # close, not bit-identical
