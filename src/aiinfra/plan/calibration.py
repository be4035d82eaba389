"""The published step times the step-time model is calibrated on, and its prediction of each.

The rows are ``catalog/data/calibration/training_step_time.csv``: one published figure each, with
its source (paper or page, table, row) and the run's configuration as published (where a setting
was not published, the ``note`` column says what is assumed). Each figure is turned into seconds:

- ``tflops_eq3``: Narayanan et al. 2021 count FLOPs with their eq. 3,
  ``96 B s l h^2 (1 + s/6h + V/16lh)``; step = that / (GPUs x published TFLOP/s).
- ``tflops_model``: step = tokens x the planner's model FLOPs per token / (GPUs x TFLOP/s).
- ``tokens_per_s_per_gpu``: step = global batch x sequence / (GPUs x tokens/s per GPU).
- ``iteration_s``: the step itself; ``layer_ms``: one layer's forward + backward, milliseconds.

``benchmarks/calibrate_step_time.py`` fits the model's free inputs on these rows and reports the
leave-one-table-out errors (docs/planner.md); tests/plan/test_calibration.py holds each row to
its figure.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiinfra.catalog.gpus import gpu
from aiinfra.catalog.models import LlmArchitecture, model
from aiinfra.plan.training import (
    Layout,
    TrainingRequest,
    model_flops_per_token,
    step_time,
    time_inputs,
    training_memory,
)

#: Narayanan et al. 2021 and Korthikanti et al. 2022 train GPT models with a 51,200-token vocabulary.
GPT_VOCAB = 51200


@dataclass(frozen=True)
class CalibrationRow:
    table: str
    row: str
    source: str
    request: TrainingRequest
    layout: Layout
    metric: str
    published: float
    note: str

    @property
    def published_s(self) -> float:
        """The published figure as seconds (a step, or one layer for ``layer_ms``)."""
        r, lay = self.request, self.layout
        tokens = lay.global_batch * r.seq_len
        if self.metric == "tflops_eq3":
            m = r.model
            layers, h, s, v = m.layers, m.hidden, r.seq_len, m.vocab
            flops = 96 * lay.global_batch * s * layers * h * h * (1 + s / (6 * h) + v / (16 * layers * h))
            return flops / (r.gpus * self.published * 1e12)
        if self.metric == "tflops_model":
            return tokens * model_flops_per_token(r.model, r.seq_len) / (r.gpus * self.published * 1e12)
        if self.metric == "tokens_per_s_per_gpu":
            return tokens / (r.gpus * self.published)
        if self.metric == "iteration_s":
            return self.published
        if self.metric == "layer_ms":
            return self.published / 1e3
        raise ValueError(f"unknown metric {self.metric}")

    def predicted_s(self, inputs: Mapping[str, float] | None = None) -> float:
        """The model's figure for this row with ``inputs`` over the row's own (the fitted defaults)."""
        values = time_inputs(self.request)
        if inputs:
            values.update(inputs)
        est = step_time(self.request, self.layout, training_memory(self.request, self.layout), values)
        if self.metric == "layer_ms":
            assert est.detail is not None
            return est.detail.layer_s
        return est.total_s

    def error(self, inputs: Mapping[str, float] | None = None) -> float:
        """Predicted / published - 1."""
        return self.predicted_s(inputs) / self.published_s - 1


def _gpt(layers: int, hidden: int, heads: int) -> LlmArchitecture:
    """The GPT models of the Megatron-LM papers: 4h GeLU MLP, LayerNorm, biases, learned positions,
    tied embeddings, dropout."""
    return LlmArchitecture(
        f"gpt-{layers}x{hidden}", "gpt", layers, hidden, 4 * hidden, heads, heads, GPT_VOCAB,
        tied_embeddings=True, gated_mlp=False, norm="layernorm", linear_bias=True, learned_positions=2048,
        dropout=True,
    )


def _row(d: dict[str, Any]) -> CalibrationRow:
    arch = _gpt(int(d["layers"]), int(d["hidden"]), int(d["heads"])) if d["model"] == "gpt" else model(d["model"])
    n = int(d["gpus"])
    tp, pp, cp, vpp = (int(d[k]) for k in ("tp", "pp", "cp", "vpp"))
    dp = n // (tp * pp * cp)
    zero = int(d["zero_stage"])
    switches = (("dp_overlap", float(d["dp_overlap"])), ("tp_comm_overlap", float(d["tp_comm_overlap"])))
    req = TrainingRequest(
        model=arch, gpu=gpu(d["gpu"]), gpus=n, tp=tp, pp=pp, dp=dp, cp=cp, vpp=vpp, seq_len=int(d["seq_len"]),
        micro_batch=int(d["micro_batch"]), global_batch=int(d["global_batch"]), precision=d["precision"],
        framework="deepspeed" if zero >= 2 else "megatron", zero_stage=zero, recompute=d["recompute"],
        sequence_parallel=d["sequence_parallel"] == "1", flash_attention=d["flash_attention"] == "1",
        distributed_optimizer=zero >= 1, inter_node_link=d["link"], time_inputs=switches,
    )
    lay = Layout(tp, pp, dp, cp, vpp, int(d["micro_batch"]), int(d["global_batch"]), d["recompute"], zero)
    return CalibrationRow(d["table"], d["row"], d["source"], req, lay, d["metric"], float(d["published"]), d["note"])


def calibration_rows() -> list[CalibrationRow]:
    """Every published row, in file order."""
    text = resources.files("aiinfra.catalog").joinpath("data/calibration/training_step_time.csv").read_text()
    return [_row(d) for d in csv.DictReader(text.splitlines())]
