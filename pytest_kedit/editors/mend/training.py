"""``kedit train-mend``: MEND's training loop (Mitchell et al. 2022, as EasyEdit runs it).

One step takes one edit example. The pre-edit pass of −log P(target | edit prompt) gives the token
factors (u, δ) of every edited weight; the network makes ΔW; the edited pass, with W + ΔW, scores

    L = cedit · L_edit + cloc · L_loc
    L_edit = −mean log P(target | p)            over the edit prompt and ``rephrases`` paraphrases
    L_loc  = mean KL(P(· | f) ‖ P'(· | f))       at the object tokens of an unrelated fact f

Gradients of ``accumulate_bs`` steps make one Adam step (``lr`` for the network, ``lr_lr`` for the
step sizes). The edited weights sit at the top of the model, so the layers below them run once per
step, without a graph (their output is replayed to both passes with ``tracing.skipped``).

Every ``val_interval`` steps: validation on held-out edits (edit loss, edit success = every target
token is the argmax, locality drawdown = share of fact tokens whose argmax changed), and a
checkpoint of the whole training state in ``--out`` (network, best network, Adam, curve), so the
same command resumes an interrupted training exactly. Training stops at ``max_iters``, when the
validation edit loss has not improved for ``early_stop_patience`` steps, or at ``max_minutes``;
the best network is then published to the cache, where ``--kedit-method=mend`` finds it.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from collections import defaultdict, deque
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from pytest_kedit.editors.mend.checkpoint import network_tensors, publish, trained_path
from pytest_kedit.editors.mend.editor import MENDHyperParams, build_network, token_factors
from pytest_kedit.editors.mend.training_data import EditExample, TrainingData
from pytest_kedit.errors import ConfigError
from pytest_kedit.model.probe import Batch, Encoder, collate, vocab_logprobs
from pytest_kedit.model.timing import PhaseTimer
from pytest_kedit.model.tracing import Trace, skipped
from pytest_kedit.storage.atomic import atomic_write_bytes, atomic_write_text
from pytest_kedit.storage.cache import locked
from pytest_kedit.storage.progress import progress_bar

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel

STATE_TENSORS, STATE_JSON = "state.safetensors", "state.json"


def scored_log_probs(model: torch.nn.Module, batch: Batch, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """log P(· | position) at every scored position of ``batch``: (scored tokens, vocab); with
    ``weights``, the named parameters are replaced by these tensors (differentiably)."""
    base = cast(torch.nn.Module, model.base_model)
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    if weights:
        prefix = next(name for name, module in model.named_modules() if module is base)
        replaced = {name.removeprefix(f"{prefix}."): w for name, w in weights.items()}
        hidden = torch.func.functional_call(base, replaced, (), inputs).last_hidden_state
    else:
        hidden = base(**inputs).last_hidden_state  # (rows, width, hidden)
    return vocab_logprobs(model, hidden[batch.rows, batch.positions])  # (scored, vocab)


class MENDTrainer:
    def __init__(self, loaded: LoadedModel, hp: MENDHyperParams, data: TrainingData, out: Path):
        if not data.train or not data.val or not data.facts:
            raise ConfigError(f"train-mend: too little data after the split ({data.split.get('train_examples')} training, "
                              f"{data.split.get('val_examples')} validation examples, {len(data.facts)} facts)")  # fmt: skip
        self.loaded, self.hp, self.data, self.out = loaded, hp, data, out
        self.model = loaded.model
        self.encoder = Encoder(loaded.tokenizer)
        torch.manual_seed(hp.seed)
        self.network = build_network(loaded, hp).train()
        self.names = self.network.names
        self.layers_below = self._layers_below()
        self.optimizer = torch.optim.Adam(
            [{"params": list(self.network.mend.parameters()), "lr": hp.lr}, {"params": [self.network.edit_lrs], "lr": hp.lr_lr}]
        )
        self.best: dict[str, torch.Tensor] = network_tensors(self.network)
        self.state: dict[str, Any] = {"step": 0, "best_step": 0, "best_val_edit_loss": None, "curve": [], "seconds": 0.0,
                                      "timings": {}, "stopped": None}  # fmt: skip
        self.timer = PhaseTimer()
        self._epoch: tuple[int, list[int]] = (-1, [])

    def _layers_below(self) -> list[str]:
        """The layers under the lowest edited weight: their output does not depend on the edit."""
        template = self.loaded.modules.layers
        indices = [int(m.group(1)) for name in self.names if (m := re.match(rf"{re.escape(template)}\.(\d+)\.", name))]
        lowest = min(indices) if len(indices) == len(self.names) else 0
        return [f"{template}.{i}" for i in range(lowest)]

    def identity(self) -> dict[str, Any]:
        """What a checkpoint in ``out`` must match to be resumed."""
        return {"model_fingerprint": self.loaded.fingerprint, "data_fingerprint": self.data.fingerprint,
                "hparams": dataclasses.asdict(self.hp) | {"max_iters": None, "max_minutes": None}}  # fmt: skip

    # -- one step --------------------------------------------------------------------------------

    def _example_batch(self, example: EditExample, rng: random.Random) -> tuple[Batch, int]:
        """Edit prompt, chosen paraphrases, then one unrelated fact; and the number of edit rows."""
        paraphrases = list(example.prompts[1:])
        rng.shuffle(paraphrases)
        prompts = [example.prompts[0], *paraphrases[: self.hp.rephrases]]
        fact = self.data.facts[rng.randrange(len(self.data.facts))]
        while fact.subject == example.subject:
            fact = self.data.facts[rng.randrange(len(self.data.facts))]
        pairs = [self.encoder(p.format(example.subject), example.target) for p in prompts]
        pairs.append(self.encoder(fact.prompt.format(fact.subject), fact.object))
        return collate(pairs, self.encoder.pad_id, self.loaded.device), len(prompts)

    def step(self, example: EditExample, rng: random.Random, train: bool) -> dict[str, float]:
        """Edit with the network, score the edited model; with ``train``, accumulate gradients."""
        batch, n_edit = self._example_batch(example, rng)
        model, timer = self.model, self.timer
        first, edit_rows, loc_rows = batch.owners == 0, batch.owners < n_edit, batch.owners == n_edit
        with ExitStack() as stack:
            if self.layers_below:
                with (
                    timer("layers below (no graph)"),
                    torch.no_grad(),
                    Trace(model, self.layers_below[-1], retain_output=True, stop=True) as below,
                ):
                    model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
                stack.enter_context(skipped(model, self.layers_below, below.output(self.layers_below[-1])))
            base_loc: list[torch.Tensor] = []

            def edit_loss() -> torch.Tensor:
                logp = scored_log_probs(model, batch)
                base_loc.append(logp[loc_rows].detach())
                return -logp[first].gather(1, batch.tokens[first, None]).mean()

            with timer("pre-edit pass and gradient"):
                factors, _ = token_factors(model, self.names, tuple(batch.input_ids.shape), edit_loss)
            with timer("network"), torch.set_grad_enabled(train):
                updates = self.network.updates(factors)
            params = dict(model.named_parameters())
            with timer("edited pass"), torch.set_grad_enabled(train):
                post = scored_log_probs(model, batch, {n: params[n] + u.to(params[n].dtype) for n, u in updates.items()})
                edit_logp = post[edit_rows].gather(1, batch.tokens[edit_rows, None])[:, 0]  # (edit tokens,)
                l_edit = -edit_logp.mean()
                base, post_loc = base_loc[0], post[loc_rows]  # (fact tokens, vocab)
                l_loc = (base.exp() * (base - post_loc)).sum(-1).mean()
                loss = self.hp.cedit * l_edit + self.hp.cloc * l_loc
        if train:
            with timer("backward"):
                (loss / self.hp.accumulate_bs).backward()
        with torch.no_grad():
            hits = (post[edit_rows].argmax(-1) == batch.tokens[edit_rows]).float()  # (edit tokens,)
            owners = batch.owners[edit_rows]
            misses = torch.zeros(n_edit).index_add_(0, owners.cpu(), (1 - hits).cpu())
            drawdown = (post_loc.argmax(-1) != base.argmax(-1)).float().mean()
        return {"loss": loss.item(), "edit_loss": l_edit.item(), "loc_loss": l_loc.item(),
                "edit_success": (misses == 0).float().mean().item(), "drawdown": drawdown.item()}  # fmt: skip

    def validate(self) -> dict[str, float]:
        self.network.eval()
        sums: dict[str, float] = defaultdict(float)
        examples = self.data.val[: self.hp.val_steps]
        training_timer, self.timer = self.timer, PhaseTimer()  # the phases of validation steps count as validation
        with training_timer("validation"):
            try:
                for j, example in enumerate(examples):
                    for key, value in self.step(example, random.Random(f"{self.hp.seed}-val-{j}"), train=False).items():
                        sums[key] += value / len(examples)
            finally:
                self.timer = training_timer
        self.network.train()
        return dict(sums)

    # -- the loop --------------------------------------------------------------------------------

    def order(self, step: int) -> EditExample:
        """The example of ``step``: each epoch goes through the training set in its own shuffled order."""
        epoch, index = divmod(step, len(self.data.train))
        if self._epoch[0] != epoch:
            permutation = list(range(len(self.data.train)))
            random.Random(f"{self.hp.seed}-epoch-{epoch}").shuffle(permutation)
            self._epoch = (epoch, permutation)
        return self.data.train[self._epoch[1][index]]

    def run(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train from the checkpoint in ``out`` (or from scratch) until a stopping rule or
        ``max_steps`` steps of this run; checkpoint, publish the best network; return the manifest."""
        self._resume()
        hp, state = self.hp, self.state
        start, started = state["step"], time.perf_counter()
        stop_at = min(hp.max_iters, start + max_steps) if max_steps is not None else hp.max_iters
        recent: deque[dict[str, float]] = deque(maxlen=100)
        with progress_bar(stop_at - start, desc="train-mend", unit="step", dynamic_ncols=True) as bar:
            while state["step"] < stop_at and state["stopped"] is None:
                step = state["step"]
                recent.append(self.step(self.order(step), random.Random(f"{hp.seed}-{step}"), train=True))
                state["step"] = step = step + 1
                if step % hp.accumulate_bs == 0:
                    with self.timer("optimiser"):
                        torch.nn.utils.clip_grad_norm_(self.network.parameters(), hp.grad_clip)
                        self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                if step % hp.val_interval == 0:
                    self._validated(self.validate())
                    self._save()
                minutes = (time.perf_counter() - started) / 60
                if hp.max_minutes is not None and minutes >= hp.max_minutes and step % hp.accumulate_bs == 0:
                    state["stopped"] = f"time budget of {hp.max_minutes} minutes"
                # Shown when the bar next draws itself (progress_bar paces it), not drawn now.
                bar.set_postfix(loss=f"{sum(r['loss'] for r in recent) / len(recent):.3f}",
                                succ=f"{sum(r['edit_success'] for r in recent) / len(recent):.2f}", refresh=False)  # fmt: skip
                bar.update(1)
        if state["step"] > start and (state["step"] % hp.val_interval != 0 or not state["curve"]):
            self._validated(self.validate())
        if state["stopped"] is None and state["step"] >= hp.max_iters:
            state["stopped"] = f"max_iters ({hp.max_iters})"
        state["seconds"] += time.perf_counter() - started
        self._save()
        return self._publish()

    def _validated(self, figures: dict[str, float]) -> None:
        state = self.state
        state["curve"].append({"step": state["step"], **figures})
        best = state["best_val_edit_loss"]
        if best is None or figures["edit_loss"] < best:
            state["best_val_edit_loss"], state["best_step"] = figures["edit_loss"], state["step"]
            self.best = network_tensors(self.network)
        elif state["step"] - state["best_step"] >= self.hp.early_stop_patience:
            state["stopped"] = f"early stop: no better validation edit loss since step {state['best_step']}"

    # -- checkpoints -----------------------------------------------------------------------------

    def _save(self) -> None:
        """The whole training state, written atomically to ``out`` under its lock."""
        optimizer = self.optimizer.state_dict()
        tensors = {f"network.{k}": v for k, v in network_tensors(self.network).items()}
        tensors |= {f"best.{k}": v for k, v in self.best.items()}
        for index, slots in optimizer["state"].items():
            tensors |= {f"adam.{index}.{slot}": value.detach().cpu().contiguous() for slot, value in slots.items()}
        self.state["timings"] = dict(self.timer.seconds)
        record = {"identity": self.identity(), "state": self.state, "param_groups": optimizer["param_groups"]}
        path = self.out / STATE_TENSORS
        with locked(path):
            atomic_write_bytes(path, save_safetensors(tensors))
            atomic_write_text(self.out / STATE_JSON, json.dumps(record, indent=1, default=str))

    def _resume(self) -> None:
        path = self.out / STATE_TENSORS
        with locked(path):
            if not (self.out / STATE_JSON).exists():
                return
            record = json.loads((self.out / STATE_JSON).read_text())
            tensors = load_safetensors(path.read_bytes())
        if record["identity"] != json.loads(json.dumps(self.identity(), default=str)):
            raise ConfigError(
                f"train-mend: {self.out} holds a training of another model, data or hyper-parameters; use another --out"
            )
        self.network.load_state_dict({k.removeprefix("network."): v for k, v in tensors.items() if k.startswith("network.")})
        self.best = {k.removeprefix("best."): v for k, v in tensors.items() if k.startswith("best.")}
        slots: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
        for key, value in tensors.items():
            if key.startswith("adam."):
                _, index, slot = key.split(".", 2)
                slots[int(index)][slot] = value
        self.optimizer.load_state_dict({"state": dict(slots), "param_groups": record["param_groups"]})
        self.state = record["state"]
        self.timer.seconds.update(self.state["timings"])
        if self.hp.max_iters > self.state["step"] and str(self.state["stopped"]).startswith(("max_iters", "time budget")):
            self.state["stopped"] = None

    def _publish(self) -> dict[str, Any]:
        """Put the best network in the cache and in ``out``, with its manifest."""
        trained = build_network(self.loaded, self.hp)
        trained.load_state_dict(self.best)
        state = self.state
        manifest = {
            "method": "mend", "model": self.loaded.name, "model_fingerprint": self.loaded.fingerprint,
            "dtype": str(self.loaded.dtype), "inner_params": self.names,
            "data": {"source": self.data.split["source"], "fingerprint": self.data.fingerprint, "split": self.data.split},
            "locality": "facts of the training part (triples, RoundEdit facts before the edit), of another subject",
            "hparams": dataclasses.asdict(self.hp), "steps": state["step"], "best_step": state["best_step"],
            "stopped": state["stopped"], "validation": state["curve"], "seconds": state["seconds"], "timings": state["timings"],
        }  # fmt: skip
        path = trained_path(self.loaded, trained)
        publish(path, trained, manifest)
        publish(self.out / "mend.safetensors", trained, manifest)
        manifest["cache_entry"] = str(path)
        return manifest
