"""The PyTorch bridge: any ``torch.nn.Module`` and loss trained by every mpitrain method.

Three parts (docs/torch.md):

- ``FlatParameters`` (mpitrain.torch.flat): the module's trainable parameters as views into one
  flat NumPy vector x, their gradients as views into another: the algorithms update x in place
  and the module computes with it, nothing copied.
- ``TorchObjective`` (mpitrain.torch.objective): the module and its loss behind the interface of
  mpitrain's objectives (loss, mini-batch gradient by autograd, accuracy, initial point), so
  every method runs it unchanged; ``objective.name = "torch"`` with ``objective.model =
  "package.module:function"`` builds one from a config (mpitrain.torch.model_spec).
- ``train(model, loss_fn, data, config=None, **overrides)`` (mpitrain.torch.training): a
  configured mpitrain run from Python, under the current MPI world; the trained weights end
  in the model. ``load_into`` / ``export_state_dict`` write a flat x back into torch's form.

Importing this package imports torch; the rest of mpitrain never does.
"""
from mpitrain.torch.flat import FlatParameters, export_state_dict, load_into, parameter_slots
from mpitrain.torch.model_spec import load_model
from mpitrain.torch.heads import HEADS, LOSS_HEADS, head_of
from mpitrain.torch.objective import TorchObjective
from mpitrain.torch.training import train

__all__ = ["FlatParameters", "HEADS", "LOSS_HEADS", "TorchObjective", "export_state_dict", "head_of", "load_into",
           "load_model", "parameter_slots", "train"]
