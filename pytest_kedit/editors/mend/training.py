"""``kedit train-mend``: MEND's training loop (Mitchell et al. 2022, as EasyEdit runs it).

A step is one edit example. The pre-edit pass of −log P(target | edit prompt) gives the token
factors (u, δ) of every edited weight; the network makes ΔW; the edited pass, with W + ΔW, scores

    L = cedit · L_edit + cloc · L_loc
    L_edit = −mean log P(target | p)            over the edit prompt and ``rephrases`` paraphrases
    L_loc  = mean KL(P(· | f) ‖ P'(· | f))       at the object tokens of an unrelated fact f

``accumulate_bs`` examples make one batch and one Adam step (``lr`` for the network, ``lr_lr`` for
the step sizes). Each example of a batch is edited on its own: its ΔW_b = Σ_t δ̃_t ũ_tᵀ is never
formed, the edited pass adds ΔW_b x to the edited modules' outputs on the example's rows only
(:func:`per_row_update`). The edited weights sit at the top of the model, so the layers below them
run once per batch, without a graph (their output is replayed to both passes with
``tracing.skipped``).

Every ``val_interval`` steps: validation on ``val_steps`` held-out edits, each with a held-out fact
(edit loss, edit success = every target token is the argmax; at the object tokens of unrelated
facts: drawdown = the drop in the share predicted right, as the MEND paper measures it, the share
whose argmax changed, and of those predicted right before the edit the share lost; the share of
prompts where the target is preferred to the old object), and a checkpoint of the whole training
state in ``--out`` (network, best network, Adam, curve), so the same command resumes an
interrupted training exactly. The best network is the
validation with the highest edit success at a drawdown of at most ``max_drawdown`` (while there is
none, the lowest loss). Training stops at ``max_iters``, when the best validation has not changed
for ``early_stop_patience`` steps, or at ``max_minutes``; the best network is then published to the
cache, where ``--kedit-method=mend`` finds it.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from pytest_kedit.editors.mend.checkpoint import network_tensors, publish, trained_path
from pytest_kedit.editors.mend.editor import MENDHyperParams, build_network, token_factors
from pytest_kedit.editors.mend.training_data import EditExample, FactExample, TrainingData
from pytest_kedit.errors import ConfigError
from pytest_kedit.model.probe import (
    Batch,
    Encoded,
    Encoder,
    collate,
    group_means,
    group_sums,
    length_batches,
    mean_logprob_per_pair,
    position_logprobs,
)
from pytest_kedit.model.timing import PhaseTimer
from pytest_kedit.model.tracing import Trace, output_added, skipped
from pytest_kedit.storage.atomic import atomic_write_bytes, atomic_write_text
from pytest_kedit.storage.cache import locked
from pytest_kedit.storage.progress import progress_bar

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel

STATE_TENSORS, STATE_JSON = "state.safetensors", "state.json"


def per_example_low_rank(
    u: torch.Tensor, delta: torch.Tensor, owners: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The factors of ``n`` examples' updates ΔW_b = Σ_{t of b} δ_t u_tᵀ, stacked and zero-padded
    to the longest: (n, tokens, in), (n, tokens, out). ``owners`` (tokens,) is each token's example,
    in non-decreasing order."""
    counts = torch.bincount(owners, minlength=n)
    width = int(counts.max()) if owners.numel() else 0
    starts = torch.cumsum(counts, 0) - counts
    slots = (owners, torch.arange(owners.shape[0], device=owners.device) - starts[owners])
    return (u.new_zeros(n, width, u.shape[1]).index_put(slots, u), delta.new_zeros(n, width, delta.shape[1]).index_put(slots, delta))


def per_row_update(u: torch.Tensor, delta: torch.Tensor, row_example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The change ΔW_b x of a weight's output for each row of a (rows, width, in) input, b the
    row's example in ``row_example``, ΔW_b given by the stacked factors of
    :func:`per_example_low_rank`: a batch of examples, each edited on its own, in one pass."""
    u_rows, delta_rows = u[row_example], delta[row_example]  # (rows, tokens, in), (rows, tokens, out)
    return lambda x: (x @ u_rows.transpose(1, 2).to(x.dtype)) @ delta_rows.to(x.dtype)


#: What a row of a training batch holds: the edit prompt, a paraphrase (both continued with the
#: target), an unrelated fact, or an edit prompt or paraphrase continued with the old object.
PROMPT, PARAPHRASE, FACT, OLD = range(4)

#: Held-out edits scored per batch in validation.
VALIDATION_BATCH = 10


@dataclass(frozen=True)
class StepEdit:
    """One edit of a step: the example, the prompts its edit loss reads (the edit prompt first) and
    the unrelated fact of its locality loss."""

    example: EditExample
    prompts: tuple[str, ...]
    fact: FactExample


class MENDTrainer:
    def __init__(self, loaded: LoadedModel, hp: MENDHyperParams, data: TrainingData, out: Path):
        if not data.train or not data.val or not data.facts or not data.val_facts:
            raise ConfigError(f"train-mend: too little data after the split ({data.split.get('train_examples')} training, "
                              f"{data.split.get('val_examples')} validation examples, {len(data.facts)} training and "
                              f"{len(data.val_facts)} validation facts)")  # fmt: skip
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
        self.state: dict[str, Any] = {"step": 0, "best_step": 0, "best": None, "curve": [], "seconds": 0.0,
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

    # -- the edits of a step ---------------------------------------------------------------------

    def _prompts(self, example: EditExample, rng: random.Random) -> tuple[str, ...]:
        """The edit prompt, then ``rephrases`` of its paraphrases drawn by ``rng``."""
        paraphrases = list(example.prompts[1:])
        rng.shuffle(paraphrases)
        return (example.prompts[0], *paraphrases[: self.hp.rephrases])

    def training_item(self, example: EditExample, rng: random.Random) -> StepEdit:
        """Paraphrases (:meth:`_prompts`) and a fact of another subject from the training part, drawn by ``rng``."""
        prompts = self._prompts(example, rng)
        fact = self.data.facts[rng.randrange(len(self.data.facts))]
        while fact.subject == example.subject:
            fact = self.data.facts[rng.randrange(len(self.data.facts))]
        return StepEdit(example, prompts, fact)

    def validation_item(self, index: int, example: EditExample) -> StepEdit:
        """The ``index``-th held-out edit, with paraphrases drawn as in training and the
        ``index``-th held-out fact (the next one of another subject), so that ``val_steps`` edits
        meet as many distinct facts as there are."""
        prompts = self._prompts(example, random.Random(f"{self.hp.seed}-val-{index}"))
        facts = self.data.val_facts
        fact = next(f for k in range(len(facts)) if (f := facts[(index + k) % len(facts)]).subject != example.subject)
        return StepEdit(example, prompts, fact)

    def _rows(self, items: Sequence[StepEdit], with_old: bool) -> tuple[Batch, torch.Tensor, torch.Tensor, list[int]]:
        """The batch of ``items``: per item its prompts continued with the target, its fact, and with
        ``with_old`` its prompts continued with the old object; each row's item and role; and for
        each OLD row, the row of the same prompt with the target."""
        pairs: list[Encoded] = []
        row_item: list[int] = []
        role: list[int] = []
        twin: list[int] = []
        for i, item in enumerate(items):
            first = len(pairs)
            prompts = [p.format(item.example.subject) for p in item.prompts]
            pairs += [self.encoder(p, item.example.target) for p in prompts]
            role += [PROMPT] + [PARAPHRASE] * (len(prompts) - 1)
            pairs.append(self.encoder(item.fact.prompt.format(item.fact.subject), item.fact.object))
            role.append(FACT)
            if with_old:
                twin += [first + k for k in range(len(prompts))]
                pairs += [self.encoder(p, item.example.old) for p in prompts]
                role += [OLD] * len(prompts)
            row_item += [i] * (len(pairs) - first)
        device = self.loaded.device
        batch = collate(pairs, self.encoder.pad_id, device)
        return batch, torch.tensor(row_item, device=device), torch.tensor(role, device=device), twin

    @torch.no_grad()
    def _below(self, batch: Batch) -> torch.Tensor:
        """The output of the layers below the edited ones at every row of ``batch``: (rows, width,
        hidden), zero at padding. Rows of similar length run together (:func:`length_batches`), so
        that short rows are not padded to the longest."""
        lengths = batch.attention_mask.sum(-1).tolist()
        rows, width = batch.input_ids.shape
        out: torch.Tensor | None = None
        for chunk in length_batches(lengths):
            index, length = torch.tensor(chunk, device=batch.input_ids.device), max(lengths[i] for i in chunk)
            with Trace(self.model, self.layers_below[-1], retain_output=True, stop=True) as trace:
                self.model.base_model(input_ids=batch.input_ids[index, :length], attention_mask=batch.attention_mask[index, :length])
            hidden = trace.output(self.layers_below[-1])  # (chunk, length, hidden)
            out = hidden.new_zeros(rows, width, hidden.shape[-1]) if out is None else out
            out[index, :length] = hidden
        assert out is not None
        return out

    def step(self, items: Sequence[StepEdit], train: bool, with_old: bool = False) -> list[dict[str, float]]:
        """Edit the model with the network for each of ``items`` on its own (in one batch), score
        each edited model; with ``train``, accumulate the gradients of the sum of their losses
        divided by ``accumulate_bs``. The figures of each item: losses, edit success (share of its
        prompts whose every target token is the argmax), drawdown (the share of its fact's tokens
        that were the argmax before the edit minus the share after: the MEND paper's drawdown), the
        share of its fact's tokens whose argmax changed, the number of its fact's tokens that were
        the argmax before (``known``) and of those that are no longer (``lost``), and with
        ``with_old`` the share of its prompts where the target's mean token log-probability exceeds
        the old object's."""
        batch, row_item, role, twin = self._rows(items, with_old)
        model, timer, n = self.model, self.timer, len(items)
        token_item, token_role = row_item[batch.rows], role[batch.rows]
        first, edit, loc = token_role == PROMPT, token_role <= PARAPHRASE, token_role == FACT
        with ExitStack() as stack:
            if self.layers_below:
                with timer("layers below (no graph)"):
                    below = self._below(batch)
                stack.enter_context(skipped(model, self.layers_below, below))
            base_loc: list[torch.Tensor] = []

            def edit_loss() -> torch.Tensor:
                needed = first | loc  # the edit prompt's tokens and the fact's: the head runs at these only
                logp = position_logprobs(model, batch, needed)
                base_loc.append(logp[loc[needed]].detach())
                target_logp = logp[first[needed]].gather(1, batch.tokens[first, None])[:, 0]
                return -group_means(target_logp, token_item[first], n).sum()

            with timer("pre-edit pass and gradient"):
                factors, _ = token_factors(model, self.names, tuple(batch.input_ids.shape), edit_loss)
            width = batch.input_ids.shape[1]
            with timer("network"), torch.set_grad_enabled(train):
                changes = {}
                for i, (name, (keep, u, delta)) in enumerate(self.network.transformed(factors).items()):
                    owners = row_item[keep.nonzero()[:, 0] // width]
                    stacked = per_example_low_rank(u, self.network.edit_lrs[i] * delta, owners, n)
                    changes[name.removesuffix(".weight")] = per_row_update(*stacked, row_item)
            with timer("edited pass"), torch.set_grad_enabled(train), output_added(model, changes):
                post = position_logprobs(model, batch)
                token_logp = post.gather(1, batch.tokens[:, None])[:, 0]  # (scored,)
                l_edit = group_means(-token_logp[edit], token_item[edit], n)
                base, post_loc = base_loc[0], post[loc]  # (fact tokens, vocab)
                l_loc = group_means((base.exp() * (base - post_loc)).sum(-1), token_item[loc], n)
                losses = self.hp.cedit * l_edit + self.hp.cloc * l_loc  # (n,)
        if train:
            with timer("backward"):
                (losses.sum() / self.hp.accumulate_bs).backward()
        with torch.no_grad():
            rows = role.shape[0]
            hits = (post.argmax(-1) == batch.tokens).float()
            row_missed = group_sums(1 - hits, batch.rows, rows) > 0  # (rows,)
            edit_rows = role <= PARAPHRASE
            fact_tokens = batch.tokens[loc]
            before, after = base.argmax(-1), post_loc.argmax(-1)
            known, kept = before == fact_tokens, after == fact_tokens
            figures = {
                "loss": losses.detach(), "edit_loss": l_edit.detach(), "loc_loss": l_loc.detach(),
                "edit_success": group_means((~row_missed[edit_rows]).float(), row_item[edit_rows], n),
                "drawdown": group_means(known.float() - kept.float(), token_item[loc], n),
                "argmax_changed": group_means((after != before).float(), token_item[loc], n),
                "known": group_sums(known.float(), token_item[loc], n),
                "lost": group_sums((known & ~kept).float(), token_item[loc], n),
            }  # fmt: skip
            if with_old:
                row_logp = mean_logprob_per_pair(token_logp, batch, rows)  # (rows,)
                old_rows = (role == OLD).nonzero()[:, 0]
                preferred = (row_logp[torch.tensor(twin, device=old_rows.device)] > row_logp[old_rows]).float()
                figures["preferred"] = group_means(preferred, row_item[old_rows], n)
        return [{key: float(value[i]) for key, value in figures.items()} for i in range(n)]

    def validate(self) -> dict[str, float]:
        """The mean figures of :meth:`step` over the first ``val_steps`` held-out edits, except
        ``knowledge_lost``: the share of all their facts' tokens predicted right before the edit
        that are not after."""
        self.network.eval()
        items = [self.validation_item(j, example) for j, example in enumerate(self.data.val[: self.hp.val_steps])]
        figures: list[dict[str, float]] = []
        training_timer, self.timer = self.timer, PhaseTimer()  # the phases of validation steps count as validation
        with training_timer("validation"):
            try:
                for start in range(0, len(items), VALIDATION_BATCH):
                    figures += self.step(items[start : start + VALIDATION_BATCH], train=False, with_old=True)
            finally:
                self.timer = training_timer
        self.network.train()
        known, lost = sum(f.pop("known") for f in figures), sum(f.pop("lost") for f in figures)
        return {key: sum(f[key] for f in figures) / len(figures) for key in figures[0]} | {"knowledge_lost": lost / max(known, 1.0)}

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
        ``max_steps`` steps of this run; checkpoint, publish the best network; return the manifest.

        A step is one training edit; ``accumulate_bs`` of them are one batch and one optimiser
        step, so a run stops at a multiple of ``accumulate_bs`` steps, and validates (and
        checkpoints) after the batch that reaches a multiple of ``val_interval``."""
        self._resume()
        hp, state = self.hp, self.state
        start, started = state["step"], time.perf_counter()
        stop_at = min(hp.max_iters, start + max_steps) if max_steps is not None else hp.max_iters
        recent: deque[dict[str, float]] = deque(maxlen=100)
        with progress_bar(stop_at - start, desc="train-mend", unit="step", dynamic_ncols=True) as bar:
            while state["step"] < stop_at and state["stopped"] is None:
                step = state["step"]
                steps = range(step, step + hp.accumulate_bs)
                recent.extend(self.step([self.training_item(self.order(s), random.Random(f"{hp.seed}-{s}")) for s in steps], train=True))
                with self.timer("optimiser"):
                    torch.nn.utils.clip_grad_norm_(self.network.parameters(), hp.grad_clip)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                state["step"] = steps.stop
                if steps.stop // hp.val_interval > step // hp.val_interval:
                    self._validated(self.validate())
                    self._save()
                if hp.max_minutes is not None and (time.perf_counter() - started) / 60 >= hp.max_minutes:
                    state["stopped"] = f"time budget of {hp.max_minutes} minutes"
                # Shown when the bar next draws itself (progress_bar paces it), not drawn now.
                bar.set_postfix(loss=f"{sum(r['loss'] for r in recent) / len(recent):.3f}",
                                succ=f"{sum(r['edit_success'] for r in recent) / len(recent):.2f}", refresh=False)  # fmt: skip
                bar.update(min(steps.stop, stop_at) - step)
        if state["step"] > start and (not state["curve"] or state["curve"][-1]["step"] != state["step"]):
            self._validated(self.validate())
        if state["stopped"] is None and state["step"] >= hp.max_iters:
            state["stopped"] = f"max_iters ({hp.max_iters})"
        state["seconds"] += time.perf_counter() - started
        self._save()
        return self._publish()

    def selection_key(self, figures: dict[str, float]) -> tuple[bool, float]:
        """How validations are ranked (larger is better): one whose drawdown is at most
        ``max_drawdown`` beats any other, and among those the higher edit success wins; among the
        rest, the lower loss (``cedit · edit loss + cloc · locality loss``, the loss trained on)."""
        within = figures["drawdown"] <= self.hp.max_drawdown
        return within, figures["edit_success"] if within else -figures["loss"]

    def _validated(self, figures: dict[str, float]) -> None:
        state = self.state
        state["curve"].append({"step": state["step"], **figures})
        best = state["best"]
        if best is None or self.selection_key(figures) > self.selection_key(best):
            state["best"], state["best_step"] = figures, state["step"]
            self.best = network_tensors(self.network)
        elif state["step"] - state["best_step"] >= self.hp.early_stop_patience:
            state["stopped"] = f"early stop: no better validation since step {state['best_step']}"

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
