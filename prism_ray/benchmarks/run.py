"""Evaluate a checkpoint on benchmarks: rollout pool → verifier pool → results table.

``evaluate`` reads every benchmark first (a missing file fails before Ray starts), starts a
local Ray cluster (or joins ``address``), builds a ``RolloutPool`` on the checkpoint (HF on
CPU, vLLM on GPU; prompts are spread over the workers in chunks of ``batch_size``) and a
``VerifierPool``, submits every chunk of every benchmark at once, and scores each benchmark
while the workers go on with the next. It writes ``generations.jsonl``, ``results.json`` and
``results.md`` to ``out``. ``rescore`` re-verifies a saved ``generations.jsonl`` in this
process, without Ray or a model.

Pool settings start from the schema's ``rollout`` and ``verifier`` sections (every default
lives there); the request changes only what the command line sets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prism_ray.benchmarks import BenchmarkData, get_benchmark, read_benchmark
from prism_ray.benchmarks.report import (
    GENERATIONS,
    RESULTS_JSON,
    Generation,
    by_benchmark,
    document,
    read_generations,
    summarize,
    verify_generations,
    write_generations,
    write_results,
)
from prism_ray.config.phases import EvalPhase, RewardConfig
from prism_ray.config.run import ClusterConfig, RunConfig
from prism_ray.config.schema import RolloutBackend, RolloutConfig, VerifierConfig
from prism_ray.types import RLPrompt, SamplingParams, VerifyRequest

Log = Callable[[str], None]


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate and how. Defaults: the schema's eval phase (greedy, its token limit)
    and the run's system prompt."""

    checkpoint: str
    benches: tuple[tuple[str, str], ...]  # (benchmark name, path), in the order given
    out: str
    limit: int | None = None
    samples: int = 1
    temperature: float = EvalPhase().sampling.temperature
    top_p: float = EvalPhase().sampling.top_p
    max_tokens: int = EvalPhase().max_response_tokens
    system_prompt: str | None = RunConfig().system_prompt
    workers: int = RolloutConfig().num_workers
    backend: str = RolloutConfig().backend.value
    gpus_per_worker: float | None = None  # None: 1 for vLLM, the schema's for HF
    batch_size: int = 32  # prompts per worker call
    seed: int = RunConfig().seed
    on_bad_row: str = "skip"
    address: str | None = None  # None: a local cluster
    verifier: VerifierConfig = field(default_factory=lambda: RunConfig().verifier)

    def settings(self) -> dict[str, Any]:
        """What results.json records of the request."""
        data = asdict(self)
        data.pop("verifier")
        data["benches"] = [list(pair) for pair in self.benches]
        return data


def load_benchmarks(request: EvalRequest, log: Log = print) -> list[BenchmarkData]:
    datasets = []
    for name, path in request.benches:
        data = read_benchmark(get_benchmark(name), path, request.limit, request.on_bad_row)
        log(f"[eval] {data.name}: {len(data.records)} prompts ({data.summary()})")
        datasets.append(data)
    return datasets


def rollout_config(request: EvalRequest) -> RolloutConfig:
    base = RunConfig().rollout
    backend = RolloutBackend(request.backend)
    gpus = request.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if backend is RolloutBackend.vllm else base.resources.num_gpus
    resources = base.resources.model_dump() | {"num_gpus": gpus}
    sampling = base.sampling.model_dump() | {"temperature": request.temperature,
                                             "top_p": request.top_p}
    return RolloutConfig(**(base.model_dump() | {
        "backend": backend, "num_workers": request.workers, "resources": resources,
        "sampling": sampling}))


def evaluate(request: EvalRequest, log: Log = print) -> dict[str, Any]:
    """Generate, score and write the results; returns the results document."""
    from prism_ray.cluster import start_ray, stop_ray

    datasets = load_benchmarks(request, log)
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    cluster = ClusterConfig(address=request.address)
    _, connected = start_ray(cluster)
    rollout = verifier = None
    try:
        from prism_ray.actors.rollout_pool import RolloutPool
        from prism_ray.actors.verifier import VerifierPool

        env = ({"OMP_NUM_THREADS": str(cluster.torch_threads)}
               if cluster.torch_threads is not None else {})
        config = rollout_config(request)
        log(f"[eval] {config.num_workers} × {config.backend.value} rollout worker(s) on "
            f"{request.checkpoint}; {request.verifier.num_workers} verifier worker(s)")
        rollout = RolloutPool(config, request.checkpoint, seed=request.seed,
                              system_prompt=request.system_prompt,
                              placement_timeout_s=cluster.placement_timeout_s, env_vars=env)
        verifier = VerifierPool(request.verifier, cluster.placement_timeout_s, env_vars=env)
        rows = _generate_and_score(request, datasets, rollout, verifier, out, log)
    finally:
        for pool in (rollout, verifier):
            if pool is not None:
                pool.shutdown()
        if connected:
            stop_ray()
    doc = document(rows, request.settings())
    write_results(out, doc)
    return doc


def _generate_and_score(request, datasets, rollout, verifier, out: Path, log: Log
                        ) -> dict[str, dict[str, Any]]:
    params = SamplingParams(n=request.samples, temperature=request.temperature,
                            top_p=request.top_p, top_k=0, max_tokens=request.max_tokens,
                            seed=request.seed)
    chunk = max(1, request.batch_size) * rollout.num_workers
    submitted = [[rollout.submit(data.records[i:i + chunk], params)
                  for i in range(0, len(data.records), chunk)] for data in datasets]
    (out / GENERATIONS).write_text("", encoding="utf-8")
    rows: dict[str, dict[str, Any]] = {}
    for data, pending in zip(datasets, submitted):
        start, groups = time.monotonic(), []
        for part in pending:
            groups += rollout.collect(part)
            log(f"[eval] {data.name}: {len(groups)}/{len(data.records)} prompts generated")
        generations = [_generation(p, g) for p, g in zip(data.records, groups, strict=True)]
        write_generations(out / GENERATIONS, generations, append=True)
        requests = [VerifyRequest(text, g.ground_truth, g.equivalent_answers)
                    for g in generations for text in g.responses]
        report = verifier.score(requests, RewardConfig()).results
        results, position = [], 0
        for g in generations:
            results.append(report[position:position + len(g.responses)])
            position += len(g.responses)
        rows[data.name] = summarize(generations, results, skipped_rows=data.skipped)
        log(f"[eval] {data.name}: accuracy {rows[data.name]['accuracy']:.3f} over "
            f"{len(generations)} prompts ({time.monotonic() - start:.0f}s)")
    return rows


def _generation(prompt: RLPrompt, group) -> Generation:
    return Generation(prompt.data_source, prompt.uid, prompt.ground_truth,
                      tuple(prompt.equivalent_answers), tuple(r.text for r in group),
                      tuple(len(r.token_ids) for r in group),
                      tuple(r.finish_reason for r in group))


def rescore(directory: str | Path, out: str | Path | None = None,
            verifier_config: VerifierConfig | None = None, log: Log = print) -> dict[str, Any]:
    """Re-verify ``directory/generations.jsonl`` and write the results to ``out`` (default:
    ``directory``). Settings and skipped-row counts come from the saved results.json."""
    from prism_ray.verify import Verifier

    source = Path(directory)
    generations = read_generations(source / GENERATIONS)
    previous = _saved_results(source / RESULTS_JSON)
    rows: dict[str, dict[str, Any]] = {}
    with Verifier(verifier_config or RunConfig().verifier, RewardConfig()) as verifier:
        for name, group in by_benchmark(generations).items():
            skipped = previous.get("benchmarks", {}).get(name, {}).get("skipped_rows", 0)
            rows[name] = summarize(group, verify_generations(group, verifier), skipped)
            log(f"[eval] {name}: accuracy {rows[name]['accuracy']:.3f} over {len(group)} "
                "prompts (rescored)")
    settings = {**previous.get("settings", {}), "rescored": True}
    doc = document(rows, settings)
    target = Path(out) if out is not None else source
    write_results(target, doc)
    if target.resolve() != source.resolve():
        write_generations(target / GENERATIONS, generations, append=False)
    return doc


def _saved_results(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
