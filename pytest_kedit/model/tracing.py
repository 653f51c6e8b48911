"""Feeding token ids to a model and reaching into its modules: the one way both are done.

:func:`pad` turns token-id sequences into a padded batch. :class:`Trace` hooks named submodules
for the duration of a ``with`` block: it keeps a module's input or output, changes it at given
positions (:class:`Patch`), or ends the forward pass as soon as everything it hooks has run, so
that the layers above are never computed. :func:`skipped` makes modules whose result is already
known return it without running; :func:`output_added` adds a function of a module's input to its
output, differentiably.

A module's *input* is its first positional argument (a decoder layer's hidden states, a
projection's keys) and its *output* the tensor it returns, or the first item of a returned tuple.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch


@dataclass(frozen=True)
class Padded:
    """A batch of token-id sequences padded to one width."""

    input_ids: torch.Tensor  # (batch, width)
    attention_mask: torch.Tensor  # (batch, width), 1 at tokens, 0 at padding
    lengths: torch.Tensor  # (batch,)


def pad(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device, left: bool = False) -> Padded:
    """``sequences`` padded with ``pad_id`` to the longest of them, after each (or, with ``left``,
    before each, so that every sequence ends in the last column), on ``device``."""
    width = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        columns = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[i, columns] = torch.tensor(seq, dtype=torch.long)
        mask[i, columns] = 1
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    return Padded(ids.to(device), mask.to(device), lengths.to(device))


@dataclass(frozen=True)
class Patch:
    """A change of a (batch, seq, hidden) value at the positions (rows[i], cols[i]):
    ``change`` maps the (positions, hidden) values found there to their replacements."""

    rows: torch.Tensor
    cols: torch.Tensor
    change: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, value: torch.Tensor) -> torch.Tensor:
        found = value[self.rows, self.cols]  # (positions, hidden)
        return value.index_put((self.rows, self.cols), self.change(found))


class StopForward(Exception):
    """Ends a forward pass once a stopping :class:`Trace` has seen all it hooks; the trace that
    raised it catches it when its ``with`` block exits."""

    def __init__(self, trace: Trace):
        super().__init__("forward pass stopped by a trace")
        self.trace = trace


class Trace:
    """Hooks on the submodules of ``model`` named in ``names`` (as in ``model.get_submodule``),
    active inside a ``with`` block.

    - ``retain_input`` / ``retain_output``: keep the module's input / output of the last forward
      pass, detached from autograd and before any patch (:meth:`input`, :meth:`output`);
    - ``patch_input`` / ``patch_output``: the module receives / returns the patched value instead;
    - ``stop``: once every hook of this trace has run, raise :class:`StopForward`, which ends the
      forward pass and the ``with`` block (statements after the forward call inside it are
      skipped). A stopping trace serves one forward pass.

    With neither retaining nor patching, a trace hooks the modules' output: ``stop`` then ends the
    pass after the last of them has run.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        names: str | Sequence[str],
        *,
        retain_input: bool = False,
        retain_output: bool = False,
        patch_input: Patch | None = None,
        patch_output: Patch | None = None,
        stop: bool = False,
    ):
        self.names = [names] if isinstance(names, str) else list(names)
        self.modules = [model.get_submodule(name) for name in self.names]
        self.retain_input, self.retain_output = retain_input, retain_output
        self.patch_input, self.patch_output = patch_input, patch_output
        self.stop = stop
        self.hooks_input = retain_input or patch_input is not None
        self.hooks_output = retain_output or patch_output is not None or not self.hooks_input
        self._inputs: dict[str, torch.Tensor] = {}
        self._outputs: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._events_left = 0

    def input(self, name: str) -> torch.Tensor:
        """The retained input of module ``name``."""
        return self._retained(name, "input", self._inputs)

    def output(self, name: str) -> torch.Tensor:
        """The retained output of module ``name``."""
        return self._retained(name, "output", self._outputs)

    @staticmethod
    def _retained(name: str, which: str, retained: dict[str, torch.Tensor]) -> torch.Tensor:
        if name not in retained:
            raise LookupError(f"no {which} of {name} was retained: it was not asked for, or the module did not run")
        return retained[name]

    def __enter__(self) -> Trace:
        self._events_left = self._events_per_pass
        for name, module in zip(self.names, self.modules):
            if self.hooks_input:
                self._handles.append(module.register_forward_pre_hook(self._input_hook(name), with_kwargs=True))
            if self.hooks_output:
                self._handles.append(module.register_forward_hook(self._output_hook(name)))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> bool:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return isinstance(exc, StopForward) and exc.trace is self

    @property
    def _events_per_pass(self) -> int:
        return len(self.modules) * (int(self.hooks_input) + int(self.hooks_output))

    def _input_hook(self, name: str) -> Callable[..., Any]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not args:
                raise TypeError(f"{name} was called without a positional input; a trace reads the first positional argument")
            if self.retain_input:
                self._inputs[name] = args[0].detach()
            replaced = None if self.patch_input is None else ((self.patch_input(args[0]), *args[1:]), kwargs)
            self._event_done()
            return replaced

        return hook

    def _output_hook(self, name: str) -> Callable[..., Any]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            hidden = output[0] if isinstance(output, tuple) else output
            if self.retain_output:
                self._outputs[name] = hidden.detach()
            replaced = None
            if self.patch_output is not None:
                patched = self.patch_output(hidden)
                replaced = (patched, *output[1:]) if isinstance(output, tuple) else patched
            self._event_done()
            return replaced

        return hook

    def _event_done(self) -> None:
        if not self.stop:
            return
        self._events_left -= 1
        if self._events_left == 0:
            self._events_left = self._events_per_pass
            raise StopForward(self)


@contextmanager
def skipped(model: torch.nn.Module, names: Sequence[str], output: Any) -> Iterator[None]:
    """While open, the named modules do not run: each returns ``output`` as it is.

    For a stack of layers whose result is already known (recorded in an earlier pass on the same
    input): a forward pass then starts computing above them. Hooks can change what a module
    returns but not spare its computation, so the modules' ``forward`` is replaced on the
    instances, and restored on exit.
    """
    modules = [model.get_submodule(name) for name in names]
    saved = [module.__dict__.get("forward") for module in modules]
    for module in modules:
        module.forward = lambda *args, **kwargs: output
    try:
        yield
    finally:
        for module, previous in zip(modules, saved):
            if previous is None:
                del module.forward
            else:
                module.forward = previous


@contextmanager
def output_added(model: torch.nn.Module, changes: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> Iterator[None]:
    """While open, each named module returns its output plus ``changes[name](input)``, where the
    input is the module's first positional argument as it came (not detached: gradients flow
    through both the input and whatever the change closes over)."""

    def hook_of(change: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            if isinstance(output, tuple):
                return (output[0] + change(args[0]), *output[1:])
            return output + change(args[0])

        return hook

    handles = [model.get_submodule(name).register_forward_hook(hook_of(change)) for name, change in changes.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
