"""A module's parameters as views into one flat vector x, their gradients as views into another.

mpitrain's algorithms hold a model as one C-contiguous NumPy vector x of length n_params and its
gradient as another, g. :class:`FlatParameters` points every trainable parameter of a
``torch.nn.Module`` at its slice of x and its ``.grad`` at its slice of g, through
``torch.from_numpy``: the storage is shared, nothing is copied. What an algorithm writes into x is
what the module computes with; what autograd accumulates lands in g.

Layout: the trainable parameters (``requires_grad``) in ``module.named_parameters()`` order (a
parameter shared by two layers once), each flattened row-major in its own shape. So a
``Linear(in, out)`` contributes ``weight`` (out, in) then ``bias`` (out,): the transpose of the
built-in mlp's W (in, out) (mpitrain.objectives.layout). Frozen parameters stay where they are
and are not part of x: no method trains or averages them.

Autograd accumulates into a ``.grad`` that exists in place (``grad += new``, the contract DDP's
``gradient_as_bucket_view`` relies on), so a backward pass after zeroing g writes the gradient
into g, not into a new tensor. A mini-batch step does better (mpitrain.torch.objective): it asks
autograd for the gradients (``torch.autograd.grad``) and copies them into the ``.grad`` views in
one pass, which reads the new gradients once and writes g once, where zeroing g and
accumulating into it writes g twice and reads it once more.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from mpitrain._native.vector import copy_and_update, scaled_update

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
_FOREACH_COPY = getattr(torch, "_foreach_copy_", None)  # one multi-tensor kernel (torch >= 2.1), looked up once


@dataclass(frozen=True)
class Slot:
    """Where one parameter lives in x."""

    name: str  # its name in module.named_parameters() / state_dict()
    offset: int  # index of its first entry in x
    shape: tuple  # its shape (torch's: Linear.weight is (out, in))

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def trainable(module) -> list:
    """[(name, parameter)] of the module's parameters that require a gradient, in x's order."""
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]


def parameter_slots(module) -> list:
    """[Slot] of the module's trainable parameters: the layout of x."""
    slots, offset = [], 0
    for name, p in trainable(module):
        slots.append(Slot(name, offset, tuple(p.shape)))
        offset += p.numel()
    return slots


def floating_buffers(module) -> list:
    """Names of the module's floating-point buffers (BatchNorm's running_mean, running_var, ...)."""
    return [name for name, b in module.named_buffers() if b is not None and b.is_floating_point()]


def _views(vector: torch.Tensor, slots) -> list:
    return [vector[s.offset:s.offset + s.size].view(s.shape) for s in slots]


def _slices(vector: np.ndarray, slots) -> list:
    return [vector[s.offset:s.offset + s.size] for s in slots]


def _check_vector(v, n, dtype, what):
    if not isinstance(v, np.ndarray) or v.dtype != dtype or v.shape != (n,):
        got = f"{v.dtype} array of shape {v.shape}" if hasattr(v, "dtype") else type(v).__name__
        raise ValueError(f"{what} must be a {np.dtype(dtype).name} array of shape ({n},), got {got}")
    if not v.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous")


class FlatParameters:
    """The trainable parameters of ``module`` as views into a flat NumPy vector.

    Built once: ``x`` (the module's current values, copied once into a vector of its own) and
    ``grad`` (zeros) of length ``n_params`` and of the parameters' dtype, the module pointed at
    both. ``bind(x)`` / ``bind_grad(g)`` point it at other vectors of the same length and dtype
    (an algorithm's iterate, its gradient buffer), again without copying; binding the vector it
    already points at costs nothing. Every trainable parameter must be a CPU tensor of the same
    floating dtype (convert the module with ``.to(dtype)`` first).
    """

    def __init__(self, module):
        named = trainable(module)
        if not named:
            raise ValueError("the model has no trainable parameters (none with requires_grad)")
        devices = sorted({str(p.device) for _, p in named})
        if devices != ["cpu"]:
            raise ValueError(f"the model's parameters are on {', '.join(devices)}: the bridge shares CPU "
                             "memory with NumPy; build the model on the CPU")
        dtypes = sorted({str(p.dtype) for _, p in named})
        if len(dtypes) != 1 or named[0][1].dtype not in TORCH_DTYPES.values():
            raise ValueError(f"the model's trainable parameters must all be float32 or all float64, got "
                             f"{', '.join(dtypes)}")
        self.module = module
        self.parameters = [p for _, p in named]
        self.slots = parameter_slots(module)
        self.dtype = np.dtype(str(named[0][1].dtype).removeprefix("torch."))
        self.n_params = sum(s.size for s in self.slots)
        self.x = np.empty(self.n_params, dtype=self.dtype)
        with torch.no_grad():
            for view, p in zip(_views(torch.from_numpy(self.x), self.slots), self.parameters):
                view.copy_(p)
        self.grad = np.zeros(self.n_params, dtype=self.dtype)
        self.bound = self.bound_grad = None  # the vectors the module points at now
        self.x_tensor = self.grad_tensor = None  # the same, as torch tensors (shared storage)
        self.grad_views = None  # the parameters' .grad: views into grad_tensor
        self.x_slices = self.grad_slices = None  # each parameter's slice of x and of g, as NumPy arrays
        self.bind(self.x)
        self.bind_grad(self.grad)

    def bind(self, x: np.ndarray) -> torch.Tensor:
        """Point every parameter at its slice of ``x`` (no copy); returns x as a torch tensor.

        x: a writable C-contiguous 1-D array of length n_params and of the parameters' dtype.
        """
        if x is not self.bound:
            _check_vector(x, self.n_params, self.dtype, "x")
            if not x.flags.writeable:
                raise ValueError("x must be writable (the module's parameters share its memory)")
            tensor = torch.from_numpy(x)
            for view, p in zip(_views(tensor, self.slots), self.parameters):
                p.data = view
            self.bound, self.x_tensor = x, tensor
            self.x_slices = _slices(x, self.slots)
        return self.x_tensor

    def bind_grad(self, g: np.ndarray) -> torch.Tensor:
        """Point every parameter's ``.grad`` at its slice of ``g`` (no copy); returns g as a tensor."""
        if g is not self.bound_grad:
            _check_vector(g, self.n_params, self.dtype, "out")
            tensor = torch.from_numpy(g)
            self.grad_views = _views(tensor, self.slots)
            for view, p in zip(self.grad_views, self.parameters):
                p.grad = view
            self.bound_grad, self.grad_tensor = g, tensor
            self.grad_slices = _slices(g, self.slots)
        return self.grad_tensor

    def fill_grad(self, gradients) -> None:
        """Copy ``gradients`` (one tensor per trainable parameter, in order, as
        ``torch.autograd.grad`` returns them) into the bound ``.grad`` views: one pass over g."""
        if _FOREACH_COPY is not None:
            _FOREACH_COPY(self.grad_views, gradients)
        else:
            for view, gradient in zip(self.grad_views, gradients):
                view.copy_(gradient)

    def fill_grad_and_update(self, gradients, alpha: float, beta: float = 1.0) -> None:
        """``fill_grad(gradients)``, then x <- beta (x + alpha g) on the bound vectors, in one pass
        per parameter (mpitrain._native.vector.copy_and_update): each gradient is read once, where
        copying it and then updating x reads it, and g, once each. Every bit equals the two steps
        (``fill_grad``, then ``scaled_update(x, g, alpha, beta)``)."""
        for x, g, gradient, view in zip(self.x_slices, self.grad_slices, gradients, self.grad_views):
            if gradient.is_contiguous() and gradient.dtype == view.dtype:
                copy_and_update(x, g, gradient.view(-1).numpy(), alpha, beta)
            else:  # a strided gradient: torch copies it, then the same update
                view.copy_(gradient)
                scaled_update(x, g, alpha, beta)

    def load(self, x: np.ndarray) -> None:
        """Copy ``x`` into this object's own vector ``self.x`` and point the module at it."""
        np.copyto(self.x, x)
        self.bind(self.x)

    def release_grad(self) -> None:
        """Drop the ``.grad`` views (the module's gradients become None again)."""
        for p in self.parameters:
            p.grad = None
        self.bound_grad = self.grad_tensor = self.grad_views = self.grad_slices = None


def load_into(module, x) -> object:
    """Copy the flat vector ``x`` into ``module``'s trainable parameters, in place; returns module.

    x: length = the module's trainable parameter count (``FlatParameters`` layout), any float
    dtype (converted to each parameter's). The module keeps its own storage (or the vector it is
    bound to: then that vector is written).
    """
    slots = parameter_slots(module)
    n = sum(s.size for s in slots)
    x = np.ascontiguousarray(x)
    if x.ndim != 1 or x.shape[0] != n:
        raise ValueError(f"x must have shape ({n},) (the model's trainable parameters), got {x.shape}")
    with torch.no_grad():
        for view, (_, p) in zip(_views(torch.from_numpy(x), slots), trainable(module)):
            p.copy_(view)
    return module


def export_state_dict(module, x) -> OrderedDict:
    """``module.state_dict()`` with the trainable parameters taken from ``x``: new tensors (copies),
    ready for ``torch.save`` or ``load_state_dict`` into a module of the same architecture."""
    slots = parameter_slots(module)
    n = sum(s.size for s in slots)
    x = np.ascontiguousarray(x)
    if x.ndim != 1 or x.shape[0] != n:
        raise ValueError(f"x must have shape ({n},) (the model's trainable parameters), got {x.shape}")
    state = OrderedDict((name, value.detach().clone()) for name, value in module.state_dict().items())
    trained = {id(p): view for view, (_, p) in zip(_views(torch.from_numpy(x), slots), trainable(module))}
    for name, p in module.named_parameters(remove_duplicate=False):  # a shared parameter under each name
        if id(p) in trained and name in state:
            state[name] = trained[id(p)].to(p.dtype, copy=True)
    return state
